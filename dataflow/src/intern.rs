//! Worker-local string interning: state keyed by small integers instead of strings.

use std::sync::Arc;

use rustc_hash::FxHashMap;

/// An interned string's number; 0 is reserved for "absent".
pub type Sym = u32;

/// Gives each distinct string a number, for the life of the worker. Memory grows with the number
/// of distinct strings (keys), never with the number of events. Each string is allocated once,
/// shared by the look-up and the list, and by the updates that name it ([`Interner::shared`]).
#[derive(Debug, Default)]
pub struct Interner {
    ids: FxHashMap<Arc<str>, Sym>,
    names: Vec<Arc<str>>,
}

impl Interner {
    /// The number of `s`, assigning the next one if `s` is new.
    pub fn intern(&mut self, s: &str) -> Sym {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let name: Arc<str> = s.into();
        self.names.push(name.clone());
        let id = self.names.len() as Sym;
        self.ids.insert(name, id);
        id
    }

    /// `intern` for optional strings: `None` is 0.
    pub fn intern_opt(&mut self, s: Option<&str>) -> Sym {
        s.map_or(0, |s| self.intern(s))
    }

    /// The string numbered `id`.
    pub fn name(&self, id: Sym) -> &str {
        id.checked_sub(1)
            .and_then(|i| self.names.get(i as usize))
            .map_or("", |n| n)
    }

    /// The string numbered `id`, shared rather than copied (empty for 0 or an unknown number).
    pub fn shared(&self, id: Sym) -> Arc<str> {
        id.checked_sub(1)
            .and_then(|i| self.names.get(i as usize))
            .map_or_else(|| Arc::from(""), Arc::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_string_same_number() {
        let mut i = Interner::default();
        let a = i.intern("a");
        assert_eq!(i.intern("b"), a + 1);
        assert_eq!(i.intern("a"), a);
        assert_eq!(i.name(a), "a");
        assert_eq!(&*i.shared(a), "a");
        assert_eq!(&*i.shared(0), "");
        assert_eq!(i.intern_opt(None), 0);
    }
}
