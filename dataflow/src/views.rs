//! The whole dataflow: every view of docs/views.md, from the inputs one worker feeds to one
//! collection of [`ViewUpdate`]s. One module per view: [`crate::counts`], [`crate::windows`],
//! [`crate::topk`], [`crate::sessions`] and [`crate::filter`] (both kept over the retained
//! history by [`crate::retained`]).
//!
//! ```text
//! counts  (pre-aggregated) -> count_total -> lifetime counters ------------------+
//!                                        \-> top-K (two stages) --------------------+
//! windows (pre-aggregated) -> newest windows -> window counters -------------------+--> updates
//!                                           \-> top-K per window -------------------+
//! batches (by owner) -------> sessions, filter matches per bucket ------------------+
//! ```

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::VecCollection;
use timely::dataflow::operators::core::Input as TimelyInput;
use timely::dataflow::{InputHandleVec, Scope};

use crate::batch::EventBatch;
use crate::config::ViewConfig;
use crate::counts::{emoji_counts, lifetime_counts};
use crate::report::{Output, RunReport};
use crate::retained::retained_views;
use crate::topk::top_k;
use crate::update::{CountKey, ViewUpdate, WindowSlot};
use crate::windows::{window_counts, WindowDelta};

/// The handles through which one worker feeds the dataflow. All advance together.
pub struct ViewInputs {
    /// Users' events and filters' match counts, routed to their owners (see
    /// `owner_of` in `feed.rs`).
    pub batches: InputHandleVec<u64, EventBatch>,
    /// Pre-aggregated window counter deltas.
    pub windows: InputHandleVec<u64, WindowDelta>,
    /// Pre-aggregated lifetime counter deltas.
    pub counts: InputSession<u64, CountKey, isize>,
    /// View updates that pass straight to the output: the recent events.
    pub extras: InputSession<u64, ViewUpdate, isize>,
    /// The runner's reports, beside the views: positions, acknowledgements, dead letters,
    /// events for live delivery.
    pub reports: InputSession<u64, RunReport, isize>,
}

impl ViewInputs {
    /// Moves every input to `time`, promising no more data before it.
    pub fn advance_to(&mut self, time: u64) {
        self.batches.advance_to(time);
        self.windows.advance_to(time);
        self.counts.advance_to(time);
        self.extras.advance_to(time);
        self.reports.advance_to(time);
        self.counts.flush();
        self.extras.flush();
        self.reports.flush();
    }

    /// The current input time.
    pub fn time(&self) -> u64 {
        *self.batches.time()
    }
}

/// Builds the views in `scope`; returns the inputs and the collection of view updates, with
/// the runner's reports beside them.
pub fn build_views<'s>(
    scope: Scope<'s, u64>,
    cfg: ViewConfig,
) -> (ViewInputs, VecCollection<'s, u64, Output, isize>) {
    let (counts_in, counts) = scope.new_collection::<CountKey, isize>();
    let (extras_in, extras) = scope.new_collection::<ViewUpdate, isize>();
    let (reports_in, reports) = scope.new_collection::<RunReport, isize>();
    let mut batches_in = InputHandleVec::new();
    let batches = scope.input_from(&mut batches_in);
    let mut windows_in = InputHandleVec::new();
    let windows = scope.input_from(&mut windows_in);

    let lifetime = lifetime_counts(counts);
    let top = top_k(emoji_counts(lifetime.clone()), cfg.top_k);
    let window_counters = window_counts(windows, cfg);
    let window_top = top_k(
        window_counters
            .clone()
            .flat_map(|(window, slot, count)| match slot {
                WindowSlot::Emoji(e) => Some((window, (e, count))),
                WindowSlot::Total => None,
            }),
        cfg.top_k,
    );
    let retained = retained_views(batches, cfg);

    let updates = lifetime
        .map(|(key, count)| ViewUpdate::Count(key, count as i64))
        .concat(top.map(|((), (e, c))| ViewUpdate::Top(e, c)))
        .concat(window_counters.map(|(w, slot, c)| ViewUpdate::WindowCount(w, slot, c)))
        .concat(window_top.map(|(w, (e, c))| ViewUpdate::WindowTop(w, e, c)))
        .concat(retained)
        .concat(extras)
        .map(Output::View)
        .concat(reports.map(Output::Report));
    let inputs = ViewInputs {
        batches: batches_in,
        windows: windows_in,
        counts: counts_in,
        extras: extras_in,
        reports: reports_in,
    };
    (inputs, updates)
}
