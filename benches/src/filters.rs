//! The synthetic filters every benchmark run holds in force, as a subscriber population might.

use emoflow_dataflow::filter::Amount;
use emoflow_dataflow::FilterSpec;

/// `n` filters of varied shapes, ids `f0`, `f1`, ...: a fifth each by emoji, purchases above an
/// amount, tier, 20 users, and two types with two tiers.
pub fn synthetic_filters(n: usize) -> Vec<(String, FilterSpec)> {
    let emojis = emoflow_ingest::generator::EMOJIS;
    (0..n)
        .map(|i| {
            let mut spec = FilterSpec::default();
            match i % 5 {
                0 => spec.emojis = Some(vec![emojis[i % emojis.len()].to_owned()]),
                1 => {
                    spec.event_types = Some(vec!["purchase".into()]);
                    spec.min_amount = Some(Amount((i * 5) as f64));
                }
                2 => spec.tiers = Some(vec!["vip".into()]),
                3 => {
                    spec.user_ids = (0..20)
                        .map(|u| format!("user-{}", u * 7 + i))
                        .collect::<Vec<_>>()
                        .into()
                }
                _ => {
                    spec.event_types = Some(vec!["emoji".into(), "click".into()]);
                    spec.tiers = Some(vec!["pro".into(), "free".into()]);
                }
            }
            (format!("f{i}"), spec)
        })
        .collect()
}
