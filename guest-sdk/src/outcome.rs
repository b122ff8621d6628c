//! What a handler returns, and how return types become it.
//!
//! Kept small and apart (axum-core style): this is the seam between user
//! return types and the WIT `outcome`, and it should rarely change.

use crate::error::Error;

/// What the host does with the message or event once the handler returns.
///
/// Most handlers return `Result<(), Error>` and never name an `Outcome`;
/// return one directly to abandon or dead-letter without an error.
///
/// ```no_run
/// use sluice_sdk::{Message, Outcome};
///
/// #[sluice_sdk::message_handler]
/// fn on_message(message: Message) -> Outcome {
///     if message.delivery_count > 3 {
///         return Outcome::DeadLetter {
///             reason: "TooManyAttempts".to_string(),
///             description: format!("gave up on {}", message.message_id),
///         };
///     }
///     Outcome::Complete
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the message is removed.
    Complete,
    /// Not done: the message is released and delivered again later (until the
    /// entity's max delivery count, then dead-lettered). Carries the reason.
    Abandon(String),
    /// Never going to work: move it to the dead-letter queue now.
    DeadLetter {
        /// A short machine-readable reason, e.g. `InvalidOrder`.
        reason: String,
        /// A human-readable explanation.
        description: String,
    },
}

/// Turns a handler's return value into an [`Outcome`].
///
/// Implemented for `()` (complete), [`Outcome`], [`Error`] and
/// `Result<T, Error>` where `T: IntoOutcome`. Implement it for your own
/// types when a handler has more to say than these.
///
/// ```no_run
/// use sluice_sdk::{IntoOutcome, Message, Outcome};
///
/// enum Stock { Reserved, Backordered }
///
/// impl IntoOutcome for Stock {
///     fn into_outcome(self) -> Outcome {
///         match self {
///             Stock::Reserved => Outcome::Complete,
///             Stock::Backordered => Outcome::Abandon("waiting for stock".to_string()),
///         }
///     }
/// }
///
/// #[sluice_sdk::message_handler]
/// fn reserve(message: Message) -> Stock {
///     if message.body.is_empty() { Stock::Backordered } else { Stock::Reserved }
/// }
/// # fn main() {}
/// ```
pub trait IntoOutcome {
    /// Converts `self` into the outcome the host acts on.
    fn into_outcome(self) -> Outcome;
}

impl IntoOutcome for () {
    fn into_outcome(self) -> Outcome {
        Outcome::Complete
    }
}

impl IntoOutcome for Outcome {
    fn into_outcome(self) -> Outcome {
        self
    }
}

impl<T: IntoOutcome> IntoOutcome for Result<T, Error> {
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(value) => value.into_outcome(),
            Err(error) => error.into_outcome(),
        }
    }
}

/// Turns a batch handler's return value into one [`Outcome`] per message.
///
/// Implemented for any [`IntoOutcome`] (`()`, [`Outcome`], `Result<(),
/// Error>`, ...: the same outcome for every message of the batch), for
/// `Vec<T>` where `T: IntoOutcome` (one per message, in the order they came
/// in), and for `Result<Vec<T>, Error>` (an `Err` settles them all alike).
/// A `Vec` of another length than the batch abandons the whole batch.
///
/// ```no_run
/// use sluice_sdk::{Message, Outcome};
///
/// #[sluice_sdk::message_batch_handler]
/// fn import(messages: Vec<Message>) -> Vec<Outcome> {
///     messages
///         .iter()
///         .map(|m| match m.text() {
///             Ok(_) => Outcome::Complete,
///             Err(e) => Outcome::DeadLetter {
///                 reason: "NotText".to_string(),
///                 description: e.to_string(),
///             },
///         })
///         .collect()
/// }
/// # fn main() {}
/// ```
pub trait IntoBatchOutcome {
    /// Converts `self` into the outcomes of a batch of `count` messages.
    fn into_outcomes(self, count: usize) -> Vec<Outcome>;
}

impl<T: IntoOutcome> IntoBatchOutcome for T {
    fn into_outcomes(self, count: usize) -> Vec<Outcome> {
        vec![self.into_outcome(); count]
    }
}

impl<T: IntoOutcome> IntoBatchOutcome for Vec<T> {
    fn into_outcomes(self, _count: usize) -> Vec<Outcome> {
        self.into_iter().map(IntoOutcome::into_outcome).collect()
    }
}

impl<T: IntoOutcome> IntoBatchOutcome for Result<Vec<T>, Error> {
    fn into_outcomes(self, count: usize) -> Vec<Outcome> {
        match self {
            Ok(outcomes) => outcomes.into_outcomes(count),
            Err(error) => error.into_outcomes(count),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_outcome_settles_the_whole_batch_alike() {
        let result: Result<(), Error> = Err(Error::msg("database down"));
        assert_eq!(
            result.into_outcomes(3),
            vec![Outcome::Abandon("database down".to_string()); 3]
        );
        assert_eq!(().into_outcomes(2), vec![Outcome::Complete; 2]);
    }

    #[test]
    fn a_vec_gives_one_outcome_per_message_in_order() {
        let outcomes = vec![Ok(()), Err(Error::dead_letter("Bad", "no id"))];
        assert_eq!(
            outcomes.into_outcomes(2),
            vec![
                Outcome::Complete,
                Outcome::DeadLetter {
                    reason: "Bad".to_string(),
                    description: "no id".to_string()
                }
            ]
        );
        let failed: Result<Vec<Outcome>, Error> = Err(Error::msg("later"));
        assert_eq!(
            failed.into_outcomes(2),
            vec![Outcome::Abandon("later".to_string()); 2]
        );
    }

    #[test]
    fn ok_unit_completes() {
        assert_eq!(Ok::<(), Error>(()).into_outcome(), Outcome::Complete);
    }

    #[test]
    fn ok_outcome_is_passed_through() {
        let result: Result<Outcome, Error> = Ok(Outcome::Abandon("later".to_string()));
        assert_eq!(result.into_outcome(), Outcome::Abandon("later".to_string()));
    }

    #[test]
    fn err_abandons_with_the_error_text() {
        let result: Result<(), Error> = Err(Error::msg("downstream unavailable"));
        assert_eq!(
            result.into_outcome(),
            Outcome::Abandon("downstream unavailable".to_string())
        );
    }
}
