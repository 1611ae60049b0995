//! The shape every source shares: an operator with an output of on-time events and a side
//! output, which schedules itself through an activator.

use std::rc::Rc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{OutputBuilder, OutputBuilderSession};
use timely::dataflow::{Scope, Stream};
use timely::scheduling::Activator;

use crate::record::Tap;

/// A session of the event output.
pub type TapsSession<'a> = OutputBuilderSession<'a, i64, CapacityContainerBuilder<Vec<Tap>>>;
/// A session of the side output.
pub type SideSession<'a, S> = OutputBuilderSession<'a, i64, CapacityContainerBuilder<Vec<S>>>;

/// Builds a source named `name`. `constructor` gets the capabilities of the event and side
/// outputs and the operator's activator, and returns the logic run on each activation.
pub fn two_output_source<'scope, S, B, L>(
    scope: Scope<'scope, i64>,
    name: &str,
    constructor: B,
) -> (Stream<'scope, i64, Vec<Tap>>, Stream<'scope, i64, Vec<S>>)
where
    S: 'static,
    B: FnOnce(Capability<i64>, Capability<i64>, Activator) -> L,
    L: FnMut(&mut TapsSession<'_>, &mut SideSession<'_, S>) + 'static,
{
    let mut builder = OperatorBuilder::new(name.to_owned(), scope);
    let activator = scope.activator_for(Rc::clone(&builder.operator_info().address));
    let (taps_output, taps) = builder.new_output();
    let (side_output, side) = builder.new_output();
    let mut taps_output = OutputBuilder::<_, CapacityContainerBuilder<Vec<Tap>>>::from(taps_output);
    let mut side_output = OutputBuilder::<_, CapacityContainerBuilder<Vec<S>>>::from(side_output);
    builder.build(move |mut capabilities| {
        let side_cap = capabilities
            .pop()
            .expect("a capability for the side output");
        let taps_cap = capabilities
            .pop()
            .expect("a capability for the event output");
        let mut logic = constructor(taps_cap, side_cap, activator);
        move |_frontiers| logic(&mut taps_output.activate(), &mut side_output.activate())
    });
    (taps, side)
}
