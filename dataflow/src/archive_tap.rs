//! Where a Kafka run hands every message it reads, so that something outside the dataflow can
//! keep it: in the product, the Parquet archive (`emoflow-storage`). The dataflow knows the
//! archive only by these two traits, so it computes and stores nothing itself.
//!
//! Each reading worker gets its own [`WorkerTap`] for its partitions and hands it every message
//! in offset order per partition, accepted or rejected, on the worker's thread.

use emoflow_ingest::Event;

/// Something that keeps what a run reads (the archive); shared by the run's workers.
pub trait ArchiveTap: Send + Sync {
    /// The tap of one worker, which reads `partitions`.
    fn worker(&self, partitions: &[i32]) -> Box<dyn WorkerTap>;
}

/// One worker's tap over its partitions; every call comes from that worker's thread.
pub trait WorkerTap: Send {
    /// Takes the message at `(partition, offset)`: its event when accepted, `None` when it was
    /// rejected (it still belongs to the partition's offsets, never to what is kept).
    fn read(&mut self, partition: i32, offset: i64, event: Option<&Event<'_>>);
    /// Called after every poll: time-based work (rolling old ranges).
    fn tick(&mut self);
    /// Hands on everything gathered so far; called when the worker stops.
    fn flush(&mut self);
    /// True while the worker should stop reading (the keeper is failing or behind): the
    /// messages wait in Kafka rather than being dropped.
    fn must_wait(&self) -> bool;
}

impl std::fmt::Debug for dyn ArchiveTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArchiveTap")
    }
}
