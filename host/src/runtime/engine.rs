//! The wasmtime engine: compiler settings, the pooling allocator and the
//! epoch clock that enforces deadlines.
//!
//! Each limit here is a security decision: a handler is untrusted code and
//! must never take the host down, starve other handlers, or hold memory
//! without bound.

use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; the granularity of deadlines and of the
/// yields that keep a busy guest from monopolising an executor thread.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Instances that may be alive at once across all functions. Each pooled
/// slot reserves address space (not memory) up front.
const POOL_INSTANCES: u32 = 256;
/// Memory of a freed instance kept mapped and reset in place (see `new_engine`):
/// enough for a small handler's stack, data and first heap pages.
const KEEP_RESIDENT_BYTES: usize = 2 << 20;
/// The same for tables.
const KEEP_RESIDENT_TABLE_BYTES: usize = 64 << 10;

/// Upper bound on any one linear memory; per-function caps are lower and
/// enforced by a store limiter.
pub const MAX_MEMORY_BYTES: usize = 1 << 30;

/// Builds the engine and starts its epoch clock.
pub(super) fn new_engine() -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 4)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 4)
        .max_memories_per_component(8)
        .max_tables_per_component(16)
        .max_core_instances_per_component(32)
        .max_memory_size(MAX_MEMORY_BYTES)
        // Reset a freed instance's first pages in place instead of with
        // madvise: by default every invocation gave its memory back, faulted
        // it in again (copy-on-write from the image) and each madvise and
        // fault flushed the other core's TLB by IPI, about a quarter of the
        // host's CPU on the queue-trigger path. The cost is up to this much
        // resident memory per pool slot in use.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES)
        // Reset only the pages the guest wrote (Linux 6.7+ PAGEMAP_SCAN;
        // elsewhere wasmtime falls back by itself). Without it every
        // invocation memset the whole kept region, up to 2 MiB, whatever
        // the guest touched: over a third of the host's CPU per one-message
        // invocation.
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config)?;

    // The clock holds only a weak reference, so it stops with the engine.
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(engine)
}
