//! The shape every source shares: an operator with three outputs (on-time events at their
//! window's start, amendments at the source's current time, and a side output of records
//! that are not counted), which schedules itself through an activator.

use std::rc::Rc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{OutputBuilder, OutputBuilderSession};
use timely::dataflow::{Scope, Stream};
use timely::scheduling::Activator;

use crate::record::{Amend, Tap};

/// A session of one of the outputs.
pub type Session<'a, D> = OutputBuilderSession<'a, i64, CapacityContainerBuilder<Vec<D>>>;

/// The sessions of a source's three outputs, open for one activation.
pub struct Sessions<'a, S: 'static> {
    /// On-time events, each at its window's start.
    pub taps: Session<'a, Tap>,
    /// Amendments, at the source's current time.
    pub amends: Session<'a, Amend>,
    /// Late, invalid or rejected records and counters.
    pub side: Session<'a, S>,
}

impl<S: 'static> Sessions<'_, S> {
    /// Sends what a source gathered in one step, each on its output, and empties the buffers:
    /// on-time events at their window's start, amendments and side records at the source's
    /// time.
    pub fn emit(
        &mut self,
        caps: &SourceCaps,
        by_window: &mut Vec<(i64, Vec<Tap>)>,
        amends: &mut Vec<Amend>,
        side: &mut Vec<S>,
    ) {
        for (start, batch) in by_window.iter_mut() {
            if !batch.is_empty() {
                self.taps
                    .session(&caps.window(*start))
                    .give_container(batch);
            }
        }
        by_window.clear();
        if !amends.is_empty() {
            self.amends.session(caps.amends()).give_container(amends);
        }
        if !side.is_empty() {
            self.side.session(caps.side()).give_container(side);
        }
    }
}

/// The capabilities of a source's outputs. They move together: every output holds back
/// the earliest window a partition may still add to.
pub struct SourceCaps {
    taps: Capability<i64>,
    amends: Capability<i64>,
    side: Capability<i64>,
}

impl SourceCaps {
    /// The time every output holds.
    pub fn time(&self) -> i64 {
        *self.taps.time()
    }

    /// Moves every output to `time` (not before where it is).
    pub fn downgrade(&mut self, time: i64) {
        self.taps.downgrade(&time);
        self.amends.downgrade(&time);
        self.side.downgrade(&time);
    }

    /// On-time events of the window starting at `start` (not before [`time`](Self::time)).
    pub fn window(&self, start: i64) -> Capability<i64> {
        self.taps.delayed(&start)
    }

    /// Amendments, at the current time.
    pub fn amends(&self) -> &Capability<i64> {
        &self.amends
    }

    /// Side records, at the current time.
    pub fn side(&self) -> &Capability<i64> {
        &self.side
    }
}

/// The streams of a source: on-time events, amendments and side records.
pub type SourceStreams<'scope, S> = (
    Stream<'scope, i64, Vec<Tap>>,
    Stream<'scope, i64, Vec<Amend>>,
    Stream<'scope, i64, Vec<S>>,
);

/// Builds a source named `name`. `constructor` gets the outputs' capabilities and the
/// operator's activator, and returns the logic run on each activation.
pub fn source_outputs<'scope, S, B, L>(
    scope: Scope<'scope, i64>,
    name: &str,
    constructor: B,
) -> SourceStreams<'scope, S>
where
    S: 'static,
    B: FnOnce(SourceCaps, Activator) -> L,
    L: FnMut(&mut Sessions<'_, S>) + 'static,
{
    let mut builder = OperatorBuilder::new(name.to_owned(), scope);
    let activator = scope.activator_for(Rc::clone(&builder.operator_info().address));
    let (taps_output, taps) = builder.new_output();
    let (amends_output, amends) = builder.new_output();
    let (side_output, side) = builder.new_output();
    let mut taps_output = OutputBuilder::<_, CapacityContainerBuilder<Vec<Tap>>>::from(taps_output);
    let mut amends_output =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<Amend>>>::from(amends_output);
    let mut side_output = OutputBuilder::<_, CapacityContainerBuilder<Vec<S>>>::from(side_output);
    builder.build(move |mut capabilities| {
        let side = capabilities
            .pop()
            .expect("a capability for the side output");
        let amends = capabilities.pop().expect("a capability for the amendments");
        let taps = capabilities.pop().expect("a capability for the events");
        let mut logic = constructor(SourceCaps { taps, amends, side }, activator);
        move |_frontiers| {
            logic(&mut Sessions {
                taps: taps_output.activate(),
                amends: amends_output.activate(),
                side: side_output.activate(),
            })
        }
    });
    (taps, amends, side)
}
