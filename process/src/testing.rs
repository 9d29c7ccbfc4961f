//! Given/when/then for a process manager's pure `react`, with no server:
//! given the instance's state, when a trigger comes, then the reaction.

use crate::manager::{ProcessManager, Reaction, Trigger};

/// A reaction under test.
pub struct ReactionTest<'m, M: ProcessManager> {
    manager: &'m M,
    state: Option<M::State>,
}

impl<'m, M: ProcessManager> ReactionTest<'m, M> {
    /// An instance of `manager` not started yet.
    pub fn new(manager: &'m M) -> Self {
        ReactionTest {
            manager,
            state: None,
        }
    }

    /// An instance in `state`.
    pub fn given(manager: &'m M, state: M::State) -> Self {
        ReactionTest {
            manager,
            state: Some(state),
        }
    }

    /// Reacts to `trigger`.
    pub fn when(self, trigger: Trigger<M::Input>) -> Reaction<M::State> {
        self.manager.react(self.state, trigger)
    }

    /// Reacts to each trigger in turn, from the given state, and returns
    /// the last reaction (its state is the one reached).
    pub fn when_all(
        self,
        triggers: impl IntoIterator<Item = Trigger<M::Input>>,
    ) -> Option<Reaction<M::State>>
    where
        M::State: Clone,
    {
        let mut state = self.state;
        let mut last = None;
        for trigger in triggers {
            let reaction = self.manager.react(state.take(), trigger);
            state = reaction.state.clone();
            last = Some(reaction);
        }
        last
    }
}
