//! The run's control messages, broadcast to every worker of every process through a small
//! dataflow of their own: the epochs worker 0 closes, the filter changes it received, and
//! stops. Worker 0 is the only one to read the clock for epochs, so that the workers of all
//! processes advance through the same times whatever their clocks say.

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::vec::Broadcast as _;
use timely::dataflow::operators::{Input as _, Inspect as _};
use timely::dataflow::InputHandle;

use crate::filter_control::FilterChange;

/// One control message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Control {
    /// Worker 0 advanced to this dataflow time: the others follow.
    Epoch(u64),
    /// Filter change number `seq`, in its own form (see [`crate::FilterSpec`]).
    Filter(u64, FilterChange),
    /// Stop reading (a process was asked to stop: all stop together).
    Stop,
    /// Worker 0 finished its bounded read: the others close their epochs by their own clocks.
    LeaderDone,
}

/// A worker's end of the control dataflow.
pub(crate) struct ControlPlane {
    input: InputHandle<u64, CapacityContainerBuilder<Vec<Control>>>,
    received: Rc<RefCell<Vec<Control>>>,
}

impl ControlPlane {
    /// Builds the control dataflow on `worker` (every worker builds it, in the same order
    /// relative to the views).
    pub(crate) fn build(worker: &mut timely::worker::Worker) -> Self {
        let received: Rc<RefCell<Vec<Control>>> = Rc::default();
        let sink = received.clone();
        let input = worker.dataflow::<u64, _, _>(move |scope| {
            let (input, stream) = scope.new_input::<Vec<Control>>();
            stream
                .broadcast()
                .inspect(move |c: &Control| sink.borrow_mut().push(c.clone()));
            input
        });
        ControlPlane { input, received }
    }

    /// Sends `message` to every worker (this one included) at once.
    pub(crate) fn send(&mut self, message: Control) {
        self.input.send(message);
        self.input.flush();
    }

    /// The messages received since the last call, in the order they arrived.
    pub(crate) fn take(&mut self) -> Vec<Control> {
        std::mem::take(&mut *self.received.borrow_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::FilterSpec;

    #[test]
    fn control_messages_survive_the_wire_encoding() {
        for c in [
            Control::Epoch(42),
            Control::Filter(
                3,
                FilterChange::Add {
                    id: "a".into(),
                    spec: FilterSpec {
                        emojis: Some(vec!["x".into()]),
                        min_amount: Some(crate::filter::Amount(2.5)),
                        ..FilterSpec::default()
                    },
                },
            ),
            Control::Filter(4, FilterChange::Remove { id: "a".into() }),
            Control::Stop,
            Control::LeaderDone,
        ] {
            let bytes = bincode::serialize(&c).unwrap();
            assert_eq!(bincode::deserialize::<Control>(&bytes).unwrap(), c);
        }
    }
}
