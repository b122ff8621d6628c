//! The one error type of handlers.

use std::fmt;

use crate::outcome::{IntoOutcome, Outcome};

/// `Result` with [`Error`] as the default error type.
///
/// ```no_run
/// use sluice_sdk::{Message, Result};
///
/// #[sluice_sdk::message_handler]
/// fn on_message(message: Message) -> Result<()> {
///     let _text: &str = message.text()?;
///     Ok(())
/// }
/// # fn main() {}
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a handler could not finish its work.
///
/// Like `anyhow::Error`, any [`std::error::Error`] converts into it, so `?`
/// works on serde, parsing and SDK calls alike. What the host does next
/// depends on how the error was made:
///
/// - an ordinary error ([`Error::msg`], or converted from another error)
///   becomes [`Outcome::Abandon`] with the error text: the message is
///   delivered again later, until the entity's max delivery count;
/// - an error made with [`Error::dead_letter`] becomes
///   [`Outcome::DeadLetter`]: retrying would not help, so the message is set
///   aside at once.
///
/// `Error` deliberately does not implement [`std::error::Error`]: that is
/// what lets it convert from every error type without overlapping impls.
///
/// ```no_run
/// use sluice_sdk::{Error, Message, Result};
///
/// #[sluice_sdk::message_handler]
/// fn on_refund(message: Message) -> Result<()> {
///     let amount: u64 = message.text()?.trim().parse()?; // ParseIntError -> Error
///     if amount == 0 {
///         return Err(Error::dead_letter("InvalidRefund", "amount must be above zero"));
///     }
///     if amount > 1_000_000 {
///         return Err(Error::msg("refund service rejects large amounts for now"));
///     }
///     Ok(())
/// }
/// # fn main() {}
/// ```
pub struct Error {
    repr: Repr,
}

enum Repr {
    Abandon(String),
    DeadLetter { reason: String, description: String },
}

impl Error {
    /// An error from a message: the host abandons the message or event, which
    /// is delivered again later.
    ///
    /// ```
    /// use sluice_sdk::Error;
    ///
    /// let status = 503;
    /// let error = Error::msg(format!("inventory service answered {status}"));
    /// assert_eq!(error.to_string(), "inventory service answered 503");
    /// ```
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            repr: Repr::Abandon(message.to_string()),
        }
    }

    /// An error that no retry can fix: the host moves the message or event to
    /// the dead-letter queue at once, with this `reason` (short,
    /// machine-readable, e.g. `InvalidOrder`) and `description` (for the
    /// human who looks at it).
    ///
    /// ```
    /// use sluice_sdk::Error;
    ///
    /// let error = Error::dead_letter("InvalidOrder", "`lines` is empty");
    /// assert!(error.is_dead_letter());
    /// ```
    pub fn dead_letter(reason: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            repr: Repr::DeadLetter {
                reason: reason.into(),
                description: description.into(),
            },
        }
    }

    /// Whether this error dead-letters the message (made with
    /// [`Error::dead_letter`]) rather than abandoning it.
    ///
    /// ```
    /// use sluice_sdk::Error;
    ///
    /// assert!(!Error::msg("database busy").is_dead_letter());
    /// ```
    pub fn is_dead_letter(&self) -> bool {
        matches!(self.repr, Repr::DeadLetter { .. })
    }

    /// What the host does with the message or event when a handler returns
    /// this error.
    ///
    /// ```
    /// use sluice_sdk::{Error, Outcome};
    ///
    /// let outcome = Error::msg("database busy").into_outcome();
    /// assert_eq!(outcome, Outcome::Abandon("database busy".to_string()));
    /// ```
    pub fn into_outcome(self) -> Outcome {
        match self.repr {
            Repr::Abandon(message) => Outcome::Abandon(message),
            Repr::DeadLetter {
                reason,
                description,
            } => Outcome::DeadLetter {
                reason,
                description,
            },
        }
    }
}

impl<E> From<E> for Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    /// Keeps the whole cause chain in the text, `outer: inner: innermost`,
    /// since the text is all that reaches the host.
    fn from(error: E) -> Self {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            // Many errors already print their cause; don't say it twice.
            if !text.ends_with(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        Self::msg(text)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Abandon(message) => f.write_str(message),
            Repr::DeadLetter {
                reason,
                description,
            } => write!(f, "{reason}: {description}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Abandon(message) => f.debug_tuple("Error").field(message).finish(),
            Repr::DeadLetter {
                reason,
                description,
            } => f
                .debug_struct("Error::DeadLetter")
                .field("reason", reason)
                .field("description", description)
                .finish(),
        }
    }
}

impl IntoOutcome for Error {
    fn into_outcome(self) -> Outcome {
        Error::into_outcome(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(Inner);
    #[derive(Debug)]
    struct Inner;

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot reserve stock")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    impl fmt::Display for Inner {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("warehouse offline")
        }
    }
    impl std::error::Error for Inner {}

    #[test]
    fn converted_errors_keep_their_cause_chain_and_abandon() {
        let error = Error::from(Outer(Inner));
        assert_eq!(
            error.into_outcome(),
            Outcome::Abandon("cannot reserve stock: warehouse offline".to_string())
        );
    }

    #[test]
    fn dead_letter_errors_dead_letter() {
        let error = Error::dead_letter("InvalidOrder", "no lines");
        assert_eq!(error.to_string(), "InvalidOrder: no lines");
        assert_eq!(
            error.into_outcome(),
            Outcome::DeadLetter {
                reason: "InvalidOrder".to_string(),
                description: "no lines".to_string()
            }
        );
    }

    #[test]
    fn question_mark_converts_std_errors() {
        fn parse(text: &str) -> Result<u32> {
            Ok(text.parse::<u32>()?)
        }
        let error = parse("x").err().map(|e| e.to_string());
        assert_eq!(error.as_deref(), Some("invalid digit found in string"));
    }
}
