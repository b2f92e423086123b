//! Lifetime counts (docs/views.md): **total** = |E|; **counts**: for each emoji e,
//! |{x in E : x.emoji = e}|; **event_types**: the same per `event_type`; and the rejected
//! inputs per reason. E is every accepted event ever read: lifetime counts never forget, so
//! retention does not apply to them.
//!
//! Each reading worker pre-aggregates its batch into one delta per key (the `Feed`, `feed.rs`),
//! so the exchange carries one record per key per batch; differential's `count_total` sums
//! the deltas of every worker per key.

use differential_dataflow::operators::CountTotal;
use differential_dataflow::VecCollection;

use crate::update::CountKey;

/// Every counter's lifetime value, from the workers' pre-aggregated deltas.
pub fn lifetime_counts<'s>(
    deltas: VecCollection<'s, u64, CountKey, isize>,
) -> VecCollection<'s, u64, (CountKey, isize), isize> {
    deltas.count_total()
}

/// The emojis' counts among `lifetime`, as the input of the top-K.
pub fn emoji_counts<'s>(
    lifetime: VecCollection<'s, u64, (CountKey, isize), isize>,
) -> VecCollection<'s, u64, ((), (String, i64)), isize> {
    lifetime.flat_map(|(key, count)| match key {
        CountKey::Emoji(e) => Some(((), (e, count as i64))),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn lifetime_counts_equal_the_oracle() {
        crate::oracle_check::assert_parts_equal_the_oracle(&[
            "total",
            "counts",
            "event_types",
            "rejected",
        ]);
    }
}
