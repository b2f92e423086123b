//! The archive as the dataflow's [`ArchiveTap`]: each reading worker archives its own
//! partitions through a [`WorkerArchive`].

use emoflow_dataflow::archive_tap::{ArchiveTap, WorkerTap};
use emoflow_ingest::Event;

use super::{ArchiveMonitor, WorkerArchive};

impl ArchiveTap for ArchiveMonitor {
    fn worker(&self, partitions: &[i32]) -> Box<dyn WorkerTap> {
        Box::new(WorkerArchive::new(self, partitions.iter().copied()))
    }
}

impl WorkerTap for WorkerArchive {
    fn read(&mut self, partition: i32, offset: i64, event: Option<&Event<'_>>) {
        WorkerArchive::read(self, partition, offset, event);
    }

    fn tick(&mut self) {
        WorkerArchive::tick(self);
    }

    fn flush(&mut self) {
        WorkerArchive::flush(self);
    }

    fn must_wait(&self) -> bool {
        WorkerArchive::must_wait(self)
    }
}
