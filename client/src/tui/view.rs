//! Drawing the terminal UI: contacts on the left, the call on the right, the history
//! below, the keys and the last message at the bottom.

use super::App;
use crate::history;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Gauge, List, ListItem, ListState, Paragraph};
use ratatui::Frame;
use serde_json::Value;

const KEYS: &str = "↑↓ select  c/Enter call  a answer  d decline  h hang up  m mute  q quit";

/// Draws the whole screen.
pub fn draw(f: &mut Frame<'_>, app: &App) {
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Min(10),
            Constraint::Length(8),
            Constraint::Length(2),
        ])
        .split(f.area());
    f.render_widget(Paragraph::new(title(app)), rows[0]);
    let cols = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(40), Constraint::Percentage(60)])
        .split(rows[1]);
    contacts(f, app, cols[0]);
    call(f, app, cols[1]);
    history_pane(f, app, rows[2]);
    f.render_widget(
        Paragraph::new(vec![
            Line::from(Span::styled(
                app.message.clone(),
                Style::default().fg(Color::Yellow),
            )),
            Line::from(KEYS),
        ]),
        rows[3],
    );
}

fn title(app: &App) -> Line<'static> {
    match &app.status {
        Some(s) => {
            let attached = s["attached"]
                .as_array()
                .map(|a| a.len())
                .unwrap_or_default();
            Line::from(format!(
                " Parley — {} ({}) — online, {attached} supernode(s)",
                s["display_name"].as_str().unwrap_or_default(),
                s["id"]
                    .as_str()
                    .unwrap_or_default()
                    .get(..10)
                    .unwrap_or_default(),
            ))
        }
        None => Line::from(" Parley — not connected to the client"),
    }
}

fn contacts(f: &mut Frame<'_>, app: &App, area: Rect) {
    let items: Vec<ListItem<'_>> = app
        .contacts
        .iter()
        .map(|c| {
            let presence = c["presence"].as_str().unwrap_or("unknown");
            let color = match presence {
                "online" => Color::Green,
                "away" => Color::Yellow,
                _ => Color::DarkGray,
            };
            ListItem::new(Line::from(vec![
                Span::raw(format!("{:<16} ", c["name"].as_str().unwrap_or_default())),
                Span::styled(format!("{presence:<8}"), Style::default().fg(color)),
                Span::raw(if c["verified"] == true { " ✓" } else { "" }),
            ]))
        })
        .collect();
    let list = List::new(items)
        .block(Block::default().borders(Borders::ALL).title(" Contacts "))
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut state = ListState::default();
    if !app.contacts.is_empty() {
        state.select(Some(app.selected));
    }
    f.render_stateful_widget(list, area, &mut state);
}

fn call(f: &mut Frame<'_>, app: &App, area: Rect) {
    let block = Block::default().borders(Borders::ALL).title(" Call ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(c) = app
        .status
        .as_ref()
        .map(|s| &s["call"])
        .filter(|c| !c.is_null())
    else {
        f.render_widget(
            Paragraph::new("no call — select a contact and press c"),
            inner,
        );
        return;
    };
    let who = c["display_name"].as_str().unwrap_or_default();
    // A caller's name is chosen by the caller: never let it reach the terminal raw.
    let who = if who.is_empty() {
        c["peer"]
            .as_str()
            .unwrap_or_default()
            .get(..10)
            .unwrap_or_default()
            .to_string()
    } else {
        parley_proto::text::printable(who)
    };
    let state = c["state"].as_str().unwrap_or_default();
    let headline = match (state, c["direction"].as_str()) {
        ("ringing", Some("incoming")) => Span::styled(
            format!("INCOMING CALL from {who} — a: answer, d: decline"),
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        ),
        ("connected", _) => Span::styled(
            format!(
                "connected with {who}  {}{}",
                clock(c["seconds"].as_f64().unwrap_or_default()),
                if c["muted"] == true { "  [MUTED]" } else { "" }
            ),
            Style::default().fg(Color::Green),
        ),
        (s, _) => Span::raw(format!("{s} {who}…")),
    };
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(0),
        ])
        .split(inner);
    f.render_widget(Paragraph::new(Line::from(headline)), rows[0]);
    f.render_widget(Paragraph::new(stats_line(&c["stats"])), rows[1]);
    meter(
        f,
        rows[2],
        "mic",
        c["level_in"].as_f64().unwrap_or_default(),
    );
    meter(
        f,
        rows[3],
        "speaker",
        c["level_out"].as_f64().unwrap_or_default(),
    );
    if let Some(list) = c["participants"].as_array() {
        f.render_widget(participants(list), rows[4]);
    }
}

/// A conference's participants: who, where their call is, their safety code, and who
/// is mixed now (`*`).
pub fn participants(list: &[Value]) -> List<'static> {
    let items: Vec<ListItem<'static>> = list
        .iter()
        .map(|p| {
            let name =
                parley_proto::text::printable(p["display_name"].as_str().unwrap_or_default());
            let speaking = p["speaking"] == true;
            let style = if speaking {
                Style::default()
                    .fg(Color::Green)
                    .add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            };
            ListItem::new(Line::from(vec![
                Span::styled(
                    format!("{} {name:<16} ", if speaking { "*" } else { " " }),
                    style,
                ),
                Span::raw(format!(
                    "{:<10} {}",
                    p["state"].as_str().unwrap_or_default(),
                    p["safety_code"].as_str().unwrap_or("")
                )),
            ]))
        })
        .collect();
    List::new(items).block(
        Block::default()
            .borders(Borders::TOP)
            .title(format!(" Conference: {} others (* speaking) ", list.len())),
    )
}

/// The call's live stats, as the command line shows them.
pub fn stats_line(s: &Value) -> String {
    if s.is_null() {
        return "(no stats yet)".into();
    }
    crate::output::stats_text(s)
}

fn meter(f: &mut Frame<'_>, area: Rect, label: &str, level: f64) {
    let gauge = Gauge::default()
        .label(format!("{label:<8}"))
        .gauge_style(Style::default().fg(Color::Cyan))
        .ratio(level.clamp(0.0, 1.0));
    f.render_widget(gauge, area);
}

fn clock(secs: f64) -> String {
    let s = secs as u64;
    format!("{:02}:{:02}", s / 60, s % 60)
}

fn history_pane(f: &mut Frame<'_>, app: &App, area: Rect) {
    let shown = area.height.saturating_sub(2) as usize;
    let skip = app.history.len().saturating_sub(shown);
    let lines: Vec<Line<'_>> = app.history[skip..]
        .iter()
        .map(|e| Line::from(history::text(e)))
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" History ")),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use serde_json::json;

    #[test]
    fn a_conference_lists_its_participants_and_who_speaks() {
        let list = vec![
            json!({"display_name": "bob", "state": "connected", "safety_code": "1234 5678 9012", "speaking": true}),
            json!({"display_name": "carol\u{1b}[2J", "state": "ringing", "safety_code": null, "speaking": false}),
        ];
        let mut term = Terminal::new(TestBackend::new(60, 4)).unwrap();
        term.draw(|f| f.render_widget(participants(&list), f.area()))
            .unwrap();
        let text: String = term
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(text.contains("2 others"), "{text}");
        assert!(text.contains("* bob"), "{text}");
        assert!(text.contains("1234 5678 9012"), "{text}");
        assert!(text.contains("ringing"), "{text}");
        // A name chosen by someone else never reaches the terminal raw.
        assert!(!text.contains('\u{1b}'), "{text}");
    }
}
