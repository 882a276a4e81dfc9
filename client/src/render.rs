//! How records and events are shown: a sentence for people, a JSON line for programs.

use parley_proto::presence::{AddressKind, NatType, PresenceRecord};
use parley_proto::Timestamp;
use serde_json::{json, Value};

/// A presence record as JSON.
pub fn record_json(r: &PresenceRecord) -> Value {
    json!({
        "id": r.id.to_string(),
        "display_name": r.display_name,
        "supernodes": r.supernodes.iter().map(|c| json!({"id": c.id.to_string(), "addr": c.addr.to_string()})).collect::<Vec<_>>(),
        "addresses": r.addresses.iter().map(|a| json!({"kind": kind(a.kind), "addr": a.addr.to_string()})).collect::<Vec<_>>(),
        "nat": nat(r.nat),
        "seq": r.seq,
        "expires_at_ms": r.expires_at.as_millis(),
    })
}

/// A presence record for people.
pub fn record_text(r: &PresenceRecord, now: Timestamp) -> String {
    let mut out = format!("id:           {}\n", r.id);
    out += &format!(
        "name:         {}\n",
        if r.display_name.is_empty() {
            "(none)".to_string()
        } else {
            parley_proto::text::printable(&r.display_name)
        }
    );
    for c in &r.supernodes {
        out += &format!("supernode:    {} ({})\n", c.addr, c.id.short());
    }
    for a in &r.addresses {
        out += &format!("address:      {} ({})\n", a.addr, kind(a.kind));
    }
    out += &format!("nat:          {}\n", nat(r.nat));
    out += &format!("seq:          {}\n", r.seq);
    out += &format!("expires in:   {} s", r.expires_at.since(now).as_secs());
    out
}

fn kind(k: AddressKind) -> &'static str {
    match k {
        AddressKind::Local => "local",
        AddressKind::Observed => "observed",
    }
}

/// The NAT type's name in output.
pub fn nat(n: NatType) -> &'static str {
    match n {
        NatType::Unknown => "unknown",
        NatType::Open => "open",
        NatType::FullCone => "full-cone",
        NatType::RestrictedCone => "restricted-cone",
        NatType::PortRestrictedCone => "port-restricted-cone",
        NatType::Symmetric => "symmetric",
        NatType::UdpBlocked => "udp-blocked",
    }
}
