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

#[cfg(test)]
mod tests {
    use super::*;

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
