//! Attribute macros of [`sluice-sdk`](https://docs.rs/sluice-sdk): export a
//! plain Rust function as a Sluice handler.
//!
//! Use them through `sluice_sdk` (`#[sluice_sdk::event_handler]`,
//! `#[sluice_sdk::message_handler]`); this crate is an implementation detail.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, parse_macro_input};

/// Exports a function as the handler of events delivered by a topic
/// subscription.
///
/// # Requirements
///
/// The function takes exactly one argument, a `sluice_sdk::Event`, and
/// returns anything that implements `sluice_sdk::IntoOutcome`: `()`, an
/// `Outcome`, or `Result<T, sluice_sdk::Error>`. It is a plain `fn`: not
/// `async`, not `unsafe`, no generics, no `self`. One handler per crate.
///
/// # Example
///
/// ```no_run
/// use sluice_sdk::{Event, Result};
///
/// #[sluice_sdk::event_handler]
/// fn on_order_created(event: Event) -> Result<()> {
///     let order: serde_json::Value = event.data()?;
///     sluice_sdk::log::info(format!("order {} created", order["id"]));
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// # Generated code
///
/// The function is kept as written. Next to it the macro adds a hidden type
/// implementing the component's `Guest` trait: `handle-event` converts the
/// WIT event, calls the function and converts its outcome;
/// `handle-message` dead-letters every queue message with reason
/// `UnsupportedTrigger`, since this component only handles events. A panic in
/// the function is a trap.
#[proc_macro_attribute]
pub fn event_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as ItemFn);
    expand(Trigger::Event, attr.into(), item)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Exports a function as the handler of messages received from a queue.
///
/// # Requirements
///
/// The function takes exactly one argument, a `sluice_sdk::Message`, and
/// returns anything that implements `sluice_sdk::IntoOutcome`: `()`, an
/// `Outcome`, or `Result<T, sluice_sdk::Error>`. It is a plain `fn`: not
/// `async`, not `unsafe`, no generics, no `self`. One handler per crate.
///
/// # Example
///
/// ```no_run
/// use sluice_sdk::{Error, Message, Result};
///
/// #[sluice_sdk::message_handler]
/// fn on_refund(message: Message) -> Result<()> {
///     let text = message.text()?;
///     if text.is_empty() {
///         return Err(Error::dead_letter("EmptyRefund", "the body is empty"));
///     }
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// # Generated code
///
/// The function is kept as written. Next to it the macro adds a hidden type
/// implementing the component's `Guest` trait: `handle-message` converts the
/// WIT message, calls the function and converts its outcome; `handle-event`
/// dead-letters every event with reason `UnsupportedTrigger`, since this
/// component only handles queue messages. A panic in the function is a trap.
#[proc_macro_attribute]
pub fn message_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as ItemFn);
    expand(Trigger::Message, attr.into(), item)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Exports a function as the handler of queue messages, many per
/// invocation (Azure Functions' `cardinality: many`): one instance serves a
/// whole batch, which is what makes high message rates cheap.
///
/// # Requirements
///
/// The function takes exactly one argument, a `Vec<sluice_sdk::Message>`
/// (1 to the function's `maxMessageBatchSize` messages, default 100, in
/// sequence order), and returns anything that implements
/// `sluice_sdk::IntoBatchOutcome`: one outcome for all (`()`, an `Outcome`,
/// `Result<(), sluice_sdk::Error>`) or one per message (`Vec<Outcome>`,
/// `Vec<Result<()>>`, `Result<Vec<_>>`). It is a plain `fn`: not `async`,
/// not `unsafe`, no generics, no `self`. One handler per crate.
///
/// # Example
///
/// ```no_run
/// use sluice_sdk::{Error, Message, Result};
///
/// #[sluice_sdk::message_batch_handler]
/// fn import(messages: Vec<Message>) -> Vec<Result<()>> {
///     messages
///         .iter()
///         .map(|message| match message.text()? {
///             "" => Err(Error::dead_letter("EmptyLine", "the body is empty")),
///             _ => Ok(()),
///         })
///         .collect()
/// }
/// # fn main() {}
/// ```
///
/// # Generated code
///
/// The function is kept as written. Next to it the macro adds a hidden type
/// implementing the `batch-handler` world's `Guest` trait: `handle-messages`
/// converts the WIT messages, calls the function and converts its outcomes.
/// The component exports neither `handle-event` nor `handle-message`, so the
/// host accepts it only with a queue trigger. A panic in the function is a
/// trap, which abandons the whole batch.
#[proc_macro_attribute]
pub fn message_batch_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as ItemFn);
    expand(Trigger::MessageBatch, attr.into(), item)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Exports a function as the handler of HTTP requests to the function's
/// route on the host's front door.
///
/// # Requirements
///
/// The function takes exactly one argument, a `sluice_sdk::http::Request`,
/// and returns anything that implements `sluice_sdk::http::IntoResponse`: a
/// `Response`, or `Result<Response, sluice_sdk::Error>` (an `Err` answers
/// a plain 500; its text goes to the host log). It is a plain `fn`: not `async`, not `unsafe`, no
/// generics, no `self`. One handler per crate.
///
/// # Example
///
/// ```no_run
/// use sluice_sdk::http::{Request, Response};
///
/// #[sluice_sdk::http_handler]
/// fn hello(request: Request) -> Response {
///     Response::text(200, format!("hello, {}", request.principal().unwrap_or("stranger")))
/// }
/// # fn main() {}
/// ```
///
/// # Generated code
///
/// The function is kept as written. Next to it the macro adds a hidden type
/// implementing the standard `wasi:http/incoming-handler` export: `handle`
/// reads the request whole, calls the function and writes its response.
/// The component targets the `http-handler` world (no `handle-event` or
/// `handle-message`), so the host accepts it only with an HTTP trigger. A
/// panic in the function is a trap, answered with 500.
#[proc_macro_attribute]
pub fn http_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as ItemFn);
    expand(Trigger::Http, attr.into(), item)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Shapes the macros refuse; `cargo test --doc` checks that each still fails.
///
/// ```compile_fail
/// #[sluice_sdk::event_handler]
/// async fn asynchronous(event: sluice_sdk::Event) {}
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[sluice_sdk::message_handler]
/// fn two_arguments(message: sluice_sdk::Message, retries: u32) {}
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[sluice_sdk::message_handler]
/// fn no_argument() {}
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[sluice_sdk::event_handler]
/// fn generic<T>(event: sluice_sdk::Event) {}
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[sluice_sdk::event_handler(topic = "orders")]
/// fn with_arguments(event: sluice_sdk::Event) {}
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[sluice_sdk::message_handler]
/// fn wrong_input(event: sluice_sdk::Event) {}
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[sluice_sdk::message_handler]
/// fn not_an_outcome(message: sluice_sdk::Message) -> u32 { 1 }
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[sluice_sdk::http_handler]
/// fn not_a_response(request: sluice_sdk::http::Request) -> u32 { 1 }
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[sluice_sdk::http_handler]
/// fn wrong_input(message: sluice_sdk::Message) -> sluice_sdk::http::Response {
///     sluice_sdk::http::Response::new(200)
/// }
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[sluice_sdk::message_batch_handler]
/// fn one_message(message: sluice_sdk::Message) {}
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[sluice_sdk::message_batch_handler]
/// fn not_outcomes(messages: Vec<sluice_sdk::Message>) -> Vec<u32> { Vec::new() }
/// # fn main() {}
/// ```
#[cfg(doctest)]
struct RefusedShapes;

#[derive(Clone, Copy)]
enum Trigger {
    Event,
    Message,
    MessageBatch,
    Http,
}

impl Trigger {
    fn attribute(self) -> &'static str {
        match self {
            Trigger::Event => "#[event_handler]",
            Trigger::Message => "#[message_handler]",
            Trigger::MessageBatch => "#[message_batch_handler]",
            Trigger::Http => "#[http_handler]",
        }
    }

    fn argument(self) -> &'static str {
        match self {
            Trigger::Event => "`event: sluice_sdk::Event`",
            Trigger::Message => "`message: sluice_sdk::Message`",
            Trigger::MessageBatch => "`messages: Vec<sluice_sdk::Message>`",
            Trigger::Http => "`request: sluice_sdk::http::Request`",
        }
    }
}

/// Checks the function's shape, one rule at a time, each error spanned on the
/// offending tokens.
fn check(trigger: Trigger, function: &ItemFn) -> syn::Result<()> {
    let attribute = trigger.attribute();
    let signature = &function.sig;
    if let Some(asyncness) = &signature.asyncness {
        return Err(syn::Error::new_spanned(
            asyncness,
            format!("`{attribute}` functions must not be `async`: handlers are synchronous"),
        ));
    }
    if let Some(unsafety) = &signature.unsafety {
        return Err(syn::Error::new_spanned(
            unsafety,
            format!("`{attribute}` functions must not be `unsafe`"),
        ));
    }
    if !signature.generics.params.is_empty() || signature.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &signature.generics,
            format!("`{attribute}` functions must not have generic parameters"),
        ));
    }
    if let Some(variadic) = &signature.variadic {
        return Err(syn::Error::new_spanned(
            variadic,
            format!("`{attribute}` functions must not be variadic"),
        ));
    }
    if let Some(receiver) = signature.receiver() {
        return Err(syn::Error::new_spanned(
            receiver,
            format!("`{attribute}` functions must be free functions, without `self`"),
        ));
    }
    if signature.inputs.len() != 1 {
        let argument = trigger.argument();
        let message = format!(
            "`{attribute}` functions take exactly one argument, {argument}; found {}",
            signature.inputs.len()
        );
        return Err(if signature.inputs.is_empty() {
            syn::Error::new(signature.paren_token.span.join(), message)
        } else {
            syn::Error::new_spanned(&signature.inputs, message)
        });
    }
    Ok(())
}

fn expand(trigger: Trigger, attr: TokenStream2, function: ItemFn) -> syn::Result<TokenStream2> {
    if !attr.is_empty() {
        return Err(syn::Error::new_spanned(
            attr,
            format!("`{}` takes no arguments", trigger.attribute()),
        ));
    }
    check(trigger, &function)?;

    let name = &function.sig.ident;
    let guest = format_ident!("__SluiceHandler", span = Span::mixed_site());
    // Type errors (wrong argument type, a return type that is not
    // `IntoOutcome`) should point at the user's tokens, not at the macro.
    let argument_span = match function.sig.inputs.first() {
        Some(FnArg::Typed(argument)) => argument.ty.span(),
        _ => name.span(),
    };
    let output_span = match &function.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => name.span(),
    };

    let bindings = quote!(::sluice_sdk::__private::bindings);
    let (handle_event, handle_message) = match trigger {
        Trigger::Event => {
            let run = quote_spanned!(argument_span=> ::sluice_sdk::__private::run_event);
            let refuse = format!("`{name}` handles events, not queue messages");
            (
                quote_spanned!(output_span=> #run(#name, event)),
                quote!(::sluice_sdk::__private::unsupported_trigger(#refuse)),
            )
        }
        Trigger::Message => {
            let run = quote_spanned!(argument_span=> ::sluice_sdk::__private::run_message);
            let refuse = format!("`{name}` handles queue messages, not events");
            (
                quote!(::sluice_sdk::__private::unsupported_trigger(#refuse)),
                quote_spanned!(output_span=> #run(#name, message)),
            )
        }
        Trigger::MessageBatch => {
            return Ok(batch_export(&function, &guest, argument_span, output_span));
        }
        Trigger::Http => {
            return Ok(http_export(&function, &guest, argument_span, output_span));
        }
    };

    Ok(quote! {
        #function

        // Hidden from the user's namespace: the component's exports.
        const _: () = {
            struct #guest;

            impl #bindings::Guest for #guest {
                fn handle_event(event: #bindings::Event) -> #bindings::Outcome {
                    #handle_event
                }

                fn handle_message(message: #bindings::Message) -> #bindings::Outcome {
                    #handle_message
                }
            }

            ::sluice_sdk::__private::export!(#guest with_types_in ::sluice_sdk::__private::bindings);
        };
    })
}

/// The `handle-messages` export of a `#[message_batch_handler]` function.
fn batch_export(
    function: &ItemFn,
    guest: &syn::Ident,
    argument_span: Span,
    output_span: Span,
) -> TokenStream2 {
    let name = &function.sig.ident;
    let run = quote_spanned!(argument_span=> ::sluice_sdk::__private::run_message_batch);
    let call = quote_spanned!(output_span=> #run(#name, messages));
    let bindings = quote!(::sluice_sdk::__private::batch_bindings);
    quote! {
        #function

        // Hidden from the user's namespace: the component's export.
        const _: () = {
            struct #guest;

            impl #bindings::Guest for #guest {
                fn handle_messages(
                    messages: ::std::vec::Vec<#bindings::Message>,
                ) -> ::std::vec::Vec<#bindings::Outcome> {
                    #call
                }
            }

            ::sluice_sdk::__private::export_batch!(#guest with_types_in ::sluice_sdk::__private::batch_bindings);
        };
    }
}

/// The `wasi:http/incoming-handler` export of an `#[http_handler]` function.
fn http_export(
    function: &ItemFn,
    guest: &syn::Ident,
    argument_span: Span,
    output_span: Span,
) -> TokenStream2 {
    let name = &function.sig.ident;
    let run = quote_spanned!(argument_span=> ::sluice_sdk::__private::run_http);
    let call = quote_spanned!(output_span=> #run(#name, request, response_out));
    let bindings = quote!(::sluice_sdk::__private::http_bindings);
    quote! {
        #function

        // Hidden from the user's namespace: the component's export.
        const _: () = {
            struct #guest;

            impl #bindings::exports::wasi::http::incoming_handler::Guest for #guest {
                fn handle(
                    request: #bindings::wasi::http::types::IncomingRequest,
                    response_out: #bindings::wasi::http::types::ResponseOutparam,
                ) {
                    #call
                }
            }

            ::sluice_sdk::__private::export_http!(#guest with_types_in ::sluice_sdk::__private::http_bindings);
        };
    }
}
