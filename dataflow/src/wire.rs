//! Serialising records that have optional fields both for people and between processes:
//! JSON leaves an absent field out, while the workers' own encoding between processes
//! (bincode, which has no field names) must write every field, or each later one would shift.

use serde::ser::SerializeStruct;
use serde::Serialize;

/// Writes an optional field: always in a binary encoding, only when present in a readable one.
pub(crate) fn optional<S: SerializeStruct, T: Serialize>(
    out: &mut S,
    readable: bool,
    name: &'static str,
    value: &Option<T>,
) -> Result<(), S::Error> {
    match value {
        None if readable => out.skip_field(name),
        value => out.serialize_field(name, value),
    }
}
