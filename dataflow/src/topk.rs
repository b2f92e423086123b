//! Ties-aware top-K (docs/views.md): every emoji whose rank is at most K, where rank is one
//! more than the number of emojis with a strictly greater count (SQL `RANK()`).
//!
//! Computed in two stages so that no single worker holds every emoji: first the ties-aware
//! top-K within each of [`BUCKETS`] hash buckets of a group, then over the survivors of the
//! group's buckets. This is exact: an emoji of rank r in the group has rank at most r in its
//! bucket, so every member of the group's top-K, and every emoji that outranks one, survives
//! the first stage.

use differential_dataflow::{ExchangeData, Hashable, VecCollection};
use xxhash_rust::xxh3::xxh3_64;

/// Buckets per group in the first stage.
pub const BUCKETS: u64 = 16;

/// The ties-aware top-`k` of each group `G` of `(emoji, count)` records. Input records must be
/// present at most once per `(group, emoji)` (as `count_total` produces them).
pub fn top_k<'s, G>(
    counts: VecCollection<'s, u64, (G, (String, i64)), isize>,
    k: usize,
) -> VecCollection<'s, u64, (G, (String, i64)), isize>
where
    G: ExchangeData + Hashable + std::hash::Hash,
{
    counts
        .map(|(g, (emoji, count))| ((g, xxh3_64(emoji.as_bytes()) % BUCKETS), (-count, emoji)))
        .reduce_named("TopKBucket", move |_key, input, output| {
            ties_aware_prefix(input, k, output)
        })
        .map(|((g, _bucket), v)| (g, v))
        .reduce_named("TopKGroup", move |_key, input, output| {
            ties_aware_prefix(input, k, output)
        })
        .map(|(g, (neg_count, emoji))| (g, (emoji, -neg_count)))
}

/// Keeps the prefix of `input` (sorted by `(-count, emoji)`, i.e. count descending) whose ranks
/// are at most `k`.
fn ties_aware_prefix(
    input: &[(&(i64, String), isize)],
    k: usize,
    output: &mut Vec<((i64, String), isize)>,
) {
    let mut kept = 0usize;
    let mut rank = 0usize;
    let mut last_count = None;
    for (val, mult) in input {
        if *mult <= 0 {
            continue;
        }
        if last_count != Some(val.0) {
            rank = kept + 1;
            last_count = Some(val.0);
        }
        if rank > k {
            break;
        }
        output.push(((*val).clone(), 1));
        kept += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(counts: &[i64], k: usize) -> Vec<i64> {
        let vals: Vec<(i64, String)> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| (-c, format!("e{i:02}")))
            .collect();
        let mut sorted: Vec<_> = vals.iter().collect();
        sorted.sort();
        let input: Vec<_> = sorted.into_iter().map(|v| (v, 1isize)).collect();
        let mut out = Vec::new();
        ties_aware_prefix(&input, k, &mut out);
        out.into_iter().map(|((c, _), _)| -c).collect()
    }

    #[test]
    fn five_tied_for_first_with_k_3_are_all_kept() {
        assert_eq!(prefix(&[5, 5, 5, 5, 5, 1], 3), vec![5; 5]);
    }

    #[test]
    fn ties_at_the_boundary_are_kept_and_lower_ranks_dropped() {
        assert_eq!(prefix(&[9, 7, 4, 4, 3], 3), vec![9, 7, 4, 4]);
        assert_eq!(prefix(&[9, 9, 4, 3], 3), vec![9, 9, 4]);
        assert_eq!(prefix(&[9, 9, 9, 3], 3), vec![9, 9, 9]);
        assert_eq!(prefix(&[9], 3), vec![9]);
    }
}

#[cfg(test)]
mod oracle_tests {
    #[test]
    fn top_k_equals_the_oracle() {
        crate::oracle_check::assert_parts_equal_the_oracle(&["top"]);
    }
}
