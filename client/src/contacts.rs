//! Contacts: names for ids, kept in `contacts.json` in the home directory.
//!
//! An id *is* its owner's public key (see `parley_proto::PeerId`), so adding a contact
//! pins the key on first use (TOFU): from then on `NAME` means exactly that key. Adding
//! the same name with another id is refused loudly (that is what a changed key looks
//! like), and an incoming caller who claims a contact's name with another key is flagged.
//! A contact's safety code can be marked verified once compared in a call.

use crate::home::Home;
use crate::output::Failure;
use anyhow::{Context, Result};
use parley_proto::PeerId;
use serde::{Deserialize, Serialize};

/// Longest contact name, in bytes.
pub const MAX_NAME: usize = 64;
/// Most contacts kept.
pub const MAX_CONTACTS: usize = 1000;

/// One contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub name: String,
    /// The pinned id (= public key), printable form.
    pub id: String,
    /// The user compared the safety code in a call and said it matched.
    #[serde(default)]
    pub verified: bool,
}

/// All contacts of one home.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Contacts {
    pub list: Vec<Contact>,
}

impl Contacts {
    /// Reads the file; missing is empty, corrupt is empty with a warning.
    pub fn load(home: &Home) -> Contacts {
        let Ok(text) = std::fs::read_to_string(home.contacts_path()) else {
            return Contacts::default();
        };
        serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring a corrupt contacts.json");
            Contacts::default()
        })
    }

    /// Writes the file atomically (write, then rename).
    pub fn save(&self, home: &Home) -> Result<()> {
        std::fs::create_dir_all(home.dir())?;
        let tmp = home.contacts_path().with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, home.contacts_path())?;
        Ok(())
    }

    /// The contact name of an id, if it is a contact.
    pub fn name_of(&self, id: &PeerId) -> Option<&str> {
        let id = id.to_string();
        self.list
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.as_str())
    }

    /// The contact called `name` (names compare case-insensitively).
    pub fn get(&self, name: &str) -> Option<&Contact> {
        self.list.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The ids of every contact, with their names.
    pub fn ids(&self) -> Vec<(String, PeerId)> {
        self.list
            .iter()
            .filter_map(|c| Some((c.name.clone(), c.id.parse().ok()?)))
            .collect()
    }

    /// Adds `name` → `id`, pinning the key. Re-adding the same pair is a no-op (false).
    /// Errors: a bad name (usage), the name pinned to another key (loudly), the id
    /// already a contact under another name, too many contacts.
    pub fn add(&mut self, name: &str, id: &str) -> Result<bool> {
        check_name(name)?;
        let id: PeerId = id
            .parse()
            .map_err(|e| Failure::usage(format!("{id:?}: {e}")))?;
        let id = id.to_string();
        if let Some(c) = self.get(name) {
            if c.id == id {
                return Ok(false);
            }
            anyhow::bail!(
                "KEY CHANGED for {}: the contact is pinned to id {} and {id} is a DIFFERENT \
                 key. It may be someone else using the name. If {} really has a new identity \
                 (ask them in person), remove the old one with `parley contact rm {}` first.",
                c.name,
                c.id,
                c.name,
                c.name
            );
        }
        if let Some(c) = self.list.iter().find(|c| c.id == id) {
            anyhow::bail!("that id is already your contact {:?}", c.name);
        }
        if self.list.len() >= MAX_CONTACTS {
            anyhow::bail!("you have {MAX_CONTACTS} contacts, the most Parley keeps");
        }
        self.list.push(Contact {
            name: name.to_string(),
            id,
            verified: false,
        });
        Ok(true)
    }

    /// Removes a contact; not-found if there is none by that name.
    pub fn remove(&mut self, name: &str) -> Result<Contact> {
        let i = self
            .list
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| Failure::not_found(format!("no contact named {name:?}")))?;
        Ok(self.list.remove(i))
    }

    /// Marks a contact's safety code as compared and matching.
    pub fn verify(&mut self, name: &str) -> Result<()> {
        let c = self
            .list
            .iter_mut()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| Failure::not_found(format!("no contact named {name:?}")))?;
        c.verified = true;
        Ok(())
    }

    /// What `parley call TARGET` means: an id (and its contact name, if any), or a
    /// contact's name. Neither is a not-found error naming both possibilities.
    pub fn resolve(&self, target: &str) -> Result<(PeerId, Option<String>)> {
        if let Some(c) = self.get(target) {
            let id =
                c.id.parse()
                    .map_err(|e| anyhow::anyhow!("contacts.json: bad id for {}: {e}", c.name))?;
            return Ok((id, Some(c.name.clone())));
        }
        match target.parse::<PeerId>() {
            Ok(id) => Ok((id, self.name_of(&id).map(str::to_string))),
            // Long enough to be an id: the id's own error says what is wrong with it.
            Err(e) if target.len() >= 50 => Err(Failure::usage(format!("{target:?}: {e}"))),
            Err(_) => Err(Failure::not_found(format!(
                "{target:?} is neither a contact (see `parley contacts`) nor an id"
            ))),
        }
    }

    /// A caller whose claimed name is one of our contacts' but whose key is not that
    /// contact's: said loudly, since it is how an impostor would try.
    pub fn impostor_warning(&self, caller: &PeerId, claimed: &str) -> Option<String> {
        let c = self.get(claimed)?;
        (c.id != caller.to_string()).then(|| {
            format!(
                "the caller calls themself {claimed:?} but is NOT your contact {} (a different \
                 key: {caller})",
                c.name
            )
        })
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(Failure::usage(format!(
            "a contact name has 1 to {MAX_NAME} bytes"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Failure::usage(
            "a contact name cannot hold control characters",
        ));
    }
    if name.parse::<PeerId>().is_ok() {
        return Err(Failure::usage("a contact name cannot be an id"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_proto::Identity;

    #[test]
    fn contacts_pin_keys_and_refuse_a_changed_one() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::resolve(Some(dir.path().to_path_buf())).unwrap();
        let (bob, mallory) = (
            Identity::generate().peer_id(),
            Identity::generate().peer_id(),
        );
        let mut c = Contacts::load(&home);
        assert!(c.add("bob", &bob.to_string()).unwrap());
        assert!(!c.add("Bob", &bob.to_string()).unwrap(), "same pair: no-op");
        let e = c.add("bob", &mallory.to_string()).unwrap_err();
        assert!(e.to_string().contains("KEY CHANGED"), "{e}");
        assert!(c.add("bobby", &bob.to_string()).is_err(), "one name per id");
        c.save(&home).unwrap();

        let mut c = Contacts::load(&home);
        assert_eq!(c.resolve("BOB").unwrap(), (bob, Some("bob".into())));
        assert_eq!(
            c.resolve(&bob.to_string()).unwrap(),
            (bob, Some("bob".into()))
        );
        let e = c.resolve("carol").unwrap_err();
        assert_eq!(
            crate::output::exit_code_of(&e),
            crate::output::EXIT_NOT_FOUND
        );
        assert!(c.impostor_warning(&mallory, "bob").is_some());
        assert!(c.impostor_warning(&bob, "bob").is_none());
        c.verify("bob").unwrap();
        assert!(c.get("bob").unwrap().verified);
        c.remove("bob").unwrap();
        assert!(c.remove("bob").is_err());
        assert!(c.add("", &bob.to_string()).is_err());
        assert!(c.add(&bob.to_string(), &bob.to_string()).is_err());
    }
}
