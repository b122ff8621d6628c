//! Turning the wasm file cargo produced into a component.
//!
//! Owns the module/component distinction (from the binary header) and the call to
//! `wit-component`, which wraps a `wasm32-unknown-unknown` core module using the
//! `component-type` custom section that `wit_bindgen::generate!` embeds in it.

use anyhow::{Context, Result, bail};
use wit_component::{ComponentEncoder, DecodedWasm};

/// What a wasm binary's header says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WasmKind {
    /// A core module (`wasm32-unknown-unknown`, `wasm32-wasip1` output).
    Module,
    /// A component (`wasm32-wasip2` output, or already componentized).
    Component,
}

/// Reads the 8-byte header: the magic, then a 2-byte version and a 2-byte layer that
/// is 0 for core modules and 1 for components (what `wasmparser::Parser::is_component`
/// checks, without another dependency).
pub(crate) fn wasm_kind(bytes: &[u8]) -> Result<WasmKind> {
    match bytes {
        [0x00, b'a', b's', b'm', _, _, 0x00, 0x00, ..] => Ok(WasmKind::Module),
        [0x00, b'a', b's', b'm', _, _, 0x01, 0x00, ..] => Ok(WasmKind::Component),
        [0x00, b'a', b's', b'm', ..] => bail!("unknown wasm layer in the header"),
        _ => bail!("not a wasm binary (bad magic)"),
    }
}

/// Returns `bytes` as a component and whether it had to be encoded (`false`: it already was one).
pub(crate) fn to_component(bytes: Vec<u8>) -> Result<(Vec<u8>, bool)> {
    let (component, encoded) = match wasm_kind(&bytes)? {
        WasmKind::Component => (bytes, false),
        WasmKind::Module => {
            let component = ComponentEncoder::default()
                .module(&bytes)
                .context("cannot read the core module's component type")?
                .validate(true)
                .encode()
                .context("cannot encode the core module as a component")?;
            (component, true)
        }
    };
    check_exports(&component)?;
    Ok((component, encoded))
}

/// Rejects a component that exports nothing: a module without the `component-type`
/// section `wit-bindgen` embeds encodes "successfully" into such an empty component,
/// which the host could only reject later with a less helpful message.
fn check_exports(component: &[u8]) -> Result<()> {
    let decoded = wit_component::decode(component).context("cannot decode the component's WIT")?;
    let DecodedWasm::Component(resolve, world) = decoded else {
        bail!("expected a component, found a WIT package");
    };
    if resolve.worlds[world].exports.is_empty() {
        bail!(
            "the component exports nothing: does the crate call `wit_bindgen::generate!` for world \
             sluice:handler and `export!` an implementation?"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_kinds() {
        assert_eq!(wasm_kind(b"\0asm\x01\0\0\0").ok(), Some(WasmKind::Module));
        assert_eq!(
            wasm_kind(b"\0asm\x0d\0\x01\0").ok(),
            Some(WasmKind::Component)
        );
        assert!(wasm_kind(b"\x7fELF\x02\x01\x01\0").is_err());
        assert!(wasm_kind(b"\0as").is_err());
    }

    #[test]
    fn module_without_component_type_is_a_clear_error() {
        let empty_module = b"\0asm\x01\0\0\0".to_vec();
        let err = to_component(empty_module).map(|_| ()).unwrap_err();
        assert!(
            format!("{err:#}").contains("wit_bindgen::generate!"),
            "{err:#}"
        );
    }
}
