use crate::prelude::*;
use crate::stream_error::StreamError;
use arrow::record_batch::RecordBatch;
use itertools::Itertools;
use log::debug;
use rayon::prelude::*;
use std::marker::PhantomData;

pub fn set_global_num_thread(num: usize) {
    rayon::ThreadPoolBuilder::new()
        .num_threads(num)
        .build_global()
        .unwrap();
}

/// The iterator that returns arrow in `RecordBatch`
pub struct ArrowBatchIter<S, TP>
where
    S: Source,
    TP: Transport<
        TSS = S::TypeSystem,
        TSD = ArrowStreamTypeSystem,
        S = S,
        D = ArrowStreamDestination,
    >,
    <S as Source>::Partition: 'static,
    <S as Source>::TypeSystem: 'static,
    <TP as Transport>::Error: 'static,
{
    dst: ArrowStreamDestination,
    dst_parts: Option<Vec<ArrowStreamPartitionWriter>>,
    src_parts: Option<Vec<S::Partition>>,
    dorder: DataOrder,
    src_schema: Vec<S::TypeSystem>,
    dst_schema: Vec<ArrowStreamTypeSystem>,
    _phantom: PhantomData<TP>,
}

impl<'a, S, TP> ArrowBatchIter<S, TP>
where
    S: Source + 'a,
    TP: Transport<
        TSS = S::TypeSystem,
        TSD = ArrowStreamTypeSystem,
        S = S,
        D = ArrowStreamDestination,
    >,
    TP::Error: std::error::Error,
{
    pub fn new(
        src: S,
        mut dst: ArrowStreamDestination,
        origin_query: Option<String>,
        queries: &[CXQuery<String>],
    ) -> Result<Self, TP::Error> {
        let dispatcher = Dispatcher::<_, _, TP>::new(src, &mut dst, queries, origin_query);
        let (dorder, src_parts, dst_parts, src_schema, dst_schema) = dispatcher.prepare()?;

        Ok(Self {
            dst,
            dst_parts: Some(dst_parts),
            src_parts: Some(src_parts),
            dorder,
            src_schema,
            dst_schema,
            _phantom: PhantomData,
        })
    }

    fn run(&mut self) {
        let src_schema = self.src_schema.clone();
        let dst_schema = self.dst_schema.clone();
        let src_partitions = self.src_parts.take().unwrap();
        let dst_partitions = self.dst_parts.take().unwrap();
        let dorder = self.dorder;
        // pg2bq patch: the producer's outcome used to be dropped, so a failure looked like a
        // short stream. It is recorded before the last sender goes, then `next` returns it.
        let sender = self.dst.take_sender();
        let producer_error = self.dst.producer_error();

        std::thread::spawn(move || {
            let schemas: Vec<_> = src_schema
                .iter()
                .zip_eq(&dst_schema)
                .map(|(&src_ty, &dst_ty)| (src_ty, dst_ty))
                .collect();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Self::write_partitions(&schemas, dorder, dst_partitions, src_partitions)
            }));
            let failure = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(StreamError::from_error(&error)),
                Err(panic) => Some(StreamError::message(panic_message(panic))),
            };
            if let Ok(mut slot) = producer_error.lock() {
                *slot = failure;
            }
            drop(sender);
        });
    }

    /// Parses every partition into its writer. pg2bq patch: a single partition runs on the
    /// calling thread instead of a worker of rayon's global pool, so a producer blocked on a
    /// full channel never holds a pool worker and streams beyond the core count are not
    /// queued behind each other.
    fn write_partitions(
        schemas: &[(S::TypeSystem, ArrowStreamTypeSystem)],
        dorder: DataOrder,
        dst_partitions: Vec<ArrowStreamPartitionWriter>,
        src_partitions: Vec<S::Partition>,
    ) -> Result<(), TP::Error> {
        debug!("Start writing");
        let write = |(i, (dst, src))| Self::write_partition(schemas, dorder, i, dst, src);
        if dst_partitions.len() == 1 {
            dst_partitions
                .into_iter()
                .zip_eq(src_partitions)
                .enumerate()
                .try_for_each(write)?;
        } else {
            dst_partitions
                .into_par_iter()
                .zip_eq(src_partitions)
                .enumerate()
                .try_for_each(write)?;
        }
        debug!("Writing finished");
        Ok(())
    }

    fn write_partition(
        schemas: &[(S::TypeSystem, ArrowStreamTypeSystem)],
        dorder: DataOrder,
        i: usize,
        mut dst: ArrowStreamPartitionWriter,
        mut src: S::Partition,
    ) -> Result<(), TP::Error> {
        let mut parser = src.parser()?;

        match dorder {
            DataOrder::RowMajor => loop {
                let (n, is_last) = parser.fetch_next()?;
                dst.aquire_row(n)?;
                for _ in 0..n {
                    for &(s1, s2) in schemas {
                        TP::process(s1, s2, &mut parser, &mut dst)?;
                    }
                }
                if is_last {
                    break;
                }
            },
            DataOrder::ColumnMajor => loop {
                let (n, is_last) = parser.fetch_next()?;
                dst.aquire_row(n)?;
                for &(s1, s2) in schemas {
                    for _ in 0..n {
                        TP::process(s1, s2, &mut parser, &mut dst)?;
                    }
                }
                if is_last {
                    break;
                }
            },
        }

        debug!("Finalize partition {}", i);
        dst.finalize()?;
        debug!("Partition {} finished", i);
        Ok(())
    }
}

/// The text of a caught panic.
fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the stream's producer panicked".to_string())
}

impl<'a, S, TP> Iterator for ArrowBatchIter<S, TP>
where
    S: Source + 'a,
    TP: Transport<
        TSS = S::TypeSystem,
        TSD = ArrowStreamTypeSystem,
        S = S,
        D = ArrowStreamDestination,
    >,
    TP::Error: std::error::Error,
{
    type Item = RecordBatch;
    /// NOTE: not thread safe
    fn next(&mut self) -> Option<Self::Item> {
        self.dst.record_batch().ok().flatten()
    }
}

pub trait RecordBatchIterator: Send {
    fn get_schema(&self) -> (RecordBatch, &[String]);
    fn prepare(&mut self);
    fn next_batch(&mut self) -> Option<RecordBatch>;
    /// pg2bq patch: the next batch, `None` at the end, or the error that stopped the
    /// producer (which `next_batch` turns into `None`).
    fn try_next_batch(&mut self) -> Result<Option<RecordBatch>, StreamError> {
        Ok(self.next_batch())
    }
}

impl<'a, S, TP> RecordBatchIterator for ArrowBatchIter<S, TP>
where
    S: Source + 'a,
    TP: Transport<
            TSS = S::TypeSystem,
            TSD = ArrowStreamTypeSystem,
            S = S,
            D = ArrowStreamDestination,
        > + std::marker::Send,
    TP::Error: std::error::Error,
{
    fn get_schema(&self) -> (RecordBatch, &[String]) {
        (self.dst.empty_batch(), self.dst.names())
    }

    fn prepare(&mut self) {
        self.run();
    }

    fn next_batch(&mut self) -> Option<RecordBatch> {
        self.next()
    }

    fn try_next_batch(&mut self) -> Result<Option<RecordBatch>, StreamError> {
        self.dst.record_batch()
    }
}
