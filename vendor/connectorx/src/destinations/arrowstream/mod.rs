//! Destination implementation for Arrow and Polars.

mod arrow_assoc;
mod errors;
mod funcs;
pub mod typesystem;

pub use self::errors::{ArrowDestinationError, Result};
pub use self::typesystem::ArrowTypeSystem;
use super::{Consume, Destination, DestinationPartition};
use crate::constants::RECORD_BATCH_SIZE;
use crate::data_order::DataOrder;
use crate::stream_error::StreamError;
use crate::typesystem::{Realize, TypeAssoc, TypeSystem};
use anyhow::anyhow;
use arrow::{datatypes::Schema, record_batch::RecordBatch};
use arrow_assoc::ArrowAssoc;
use fehler::{throw, throws};
use funcs::{FFinishBuilder, FNewBuilder, FNewField};
use itertools::Itertools;
use std::{
    any::Any,
    sync::{
        mpsc::{sync_channel, Receiver, SyncSender},
        Arc, Mutex,
    },
};

type Builder = Box<dyn Any + Send>;
type Builders = Vec<Builder>;

/// Finished batches that may wait for the consumer. A full channel blocks the producer, so a
/// stream holds at most the batch being built, this many queued and the one being consumed,
/// whatever the consumer's speed. (pg2bq patch: the channel was unbounded.)
pub const STREAM_BUFFERED_BATCHES: usize = 1;

/// Where the producer leaves the error that ended it, read once the stream is closed.
pub type ProducerError = Arc<Mutex<Option<StreamError>>>;

pub struct ArrowDestination {
    schema: Vec<ArrowTypeSystem>,
    names: Vec<String>,
    arrow_schema: Arc<Schema>,
    batch_size: usize,
    sender: Option<SyncSender<RecordBatch>>,
    receiver: Receiver<RecordBatch>,
    producer_error: ProducerError,
}

impl Default for ArrowDestination {
    fn default() -> Self {
        let (tx, rx) = sync_channel(STREAM_BUFFERED_BATCHES);
        ArrowDestination {
            schema: vec![],
            names: vec![],
            arrow_schema: Arc::new(Schema::empty()),
            batch_size: RECORD_BATCH_SIZE,
            sender: Some(tx),
            receiver: rx,
            producer_error: ProducerError::default(),
        }
    }
}

impl ArrowDestination {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn new_with_batch_size(batch_size: usize) -> Self {
        let (tx, rx) = sync_channel(STREAM_BUFFERED_BATCHES);
        ArrowDestination {
            schema: vec![],
            names: vec![],
            arrow_schema: Arc::new(Schema::empty()),
            batch_size,
            sender: Some(tx),
            receiver: rx,
            producer_error: ProducerError::default(),
        }
    }
}

impl Destination for ArrowDestination {
    const DATA_ORDERS: &'static [DataOrder] = &[DataOrder::ColumnMajor, DataOrder::RowMajor];
    type TypeSystem = ArrowTypeSystem;
    type Partition<'a> = ArrowPartitionWriter;
    type Error = ArrowDestinationError;

    fn needs_count(&self) -> bool {
        false
    }

    #[throws(ArrowDestinationError)]
    fn allocate<S: AsRef<str>>(
        &mut self,
        _nrow: usize,
        names: &[S],
        schema: &[ArrowTypeSystem],
        data_order: DataOrder,
    ) {
        // todo: support colmajor
        if !matches!(data_order, DataOrder::RowMajor) {
            throw!(crate::errors::ConnectorXError::UnsupportedDataOrder(
                data_order
            ))
        }

        // parse the metadata
        self.schema = schema.to_vec();
        self.names = names.iter().map(|n| n.as_ref().to_string()).collect();
        let fields = self
            .schema
            .iter()
            .zip_eq(&self.names)
            .map(|(&dt, h)| Ok(Realize::<FNewField>::realize(dt)?(h.as_str())))
            .collect::<Result<Vec<_>>>()?;
        self.arrow_schema = Arc::new(Schema::new(fields));
    }

    #[throws(ArrowDestinationError)]
    fn partition(&mut self, counts: usize) -> Vec<Self::Partition<'_>> {
        let mut partitions = vec![];
        // The destination keeps its own sender until the producer takes it
        // (`take_sender`), so the stream cannot look finished before a failed producer
        // has left its error.
        let sender = self
            .sender
            .clone()
            .ok_or_else(|| anyhow!("the stream's partitions were already made"))?;
        for _ in 0..counts {
            partitions.push(ArrowPartitionWriter::new(
                self.schema.clone(),
                Arc::clone(&self.arrow_schema),
                self.batch_size,
                sender.clone(),
            )?);
        }
        partitions
    }

    fn schema(&self) -> &[ArrowTypeSystem] {
        self.schema.as_slice()
    }
}

impl ArrowDestination {
    #[throws(ArrowDestinationError)]
    pub fn arrow(self) -> Vec<RecordBatch> {
        if self.sender.is_some() {
            // should not happen since it is dropped after partition
            // but need to make sure here otherwise recv will be blocked forever
            std::mem::drop(self.sender);
        }
        let mut data = vec![];
        loop {
            match self.receiver.recv() {
                Ok(rb) => data.push(rb),
                Err(_) => break,
            }
        }
        data
    }

    /// The next batch, `None` once every producer finished, or the error that stopped one.
    pub fn record_batch(&mut self) -> std::result::Result<Option<RecordBatch>, StreamError> {
        match self.receiver.recv() {
            Ok(rb) => Ok(Some(rb)),
            Err(_) => match self.producer_error.lock().map(|mut e| e.take()) {
                Ok(None) => Ok(None),
                Ok(Some(error)) => Err(error),
                Err(_) => Err(StreamError::message("the stream's producer panicked".into())),
            },
        }
    }

    /// The destination's own sender, for the producer to hold (and drop) after it has
    /// recorded its outcome in [`Self::producer_error`].
    pub fn take_sender(&mut self) -> Option<SyncSender<RecordBatch>> {
        self.sender.take()
    }

    /// Where the producer records the error that stopped it.
    pub fn producer_error(&self) -> ProducerError {
        Arc::clone(&self.producer_error)
    }

    pub fn empty_batch(&self) -> RecordBatch {
        RecordBatch::new_empty(self.arrow_schema.clone())
    }

    pub fn arrow_schema(&self) -> Arc<Schema> {
        self.arrow_schema.clone()
    }

    pub fn names(&self) -> &[String] {
        self.names.as_slice()
    }
}

pub struct ArrowPartitionWriter {
    schema: Vec<ArrowTypeSystem>,
    builders: Option<Builders>,
    current_row: usize,
    current_col: usize,
    arrow_schema: Arc<Schema>,
    batch_size: usize,
    sender: Option<SyncSender<RecordBatch>>,
    /// Variable-length bytes per column in the last batch, so the next batch's string and
    /// binary builders start at that size instead of growing by reallocation from `nrows`
    /// bytes. (pg2bq patch.)
    value_bytes: Vec<usize>,
}

// unsafe impl Sync for ArrowPartitionWriter {}

impl ArrowPartitionWriter {
    #[throws(ArrowDestinationError)]
    fn new(
        schema: Vec<ArrowTypeSystem>,
        arrow_schema: Arc<Schema>,
        batch_size: usize,
        sender: SyncSender<RecordBatch>,
    ) -> Self {
        let mut pw = ArrowPartitionWriter {
            value_bytes: vec![0; schema.len()],
            schema,
            builders: None,
            current_row: 0,
            current_col: 0,
            arrow_schema,
            batch_size,
            sender: Some(sender),
        };
        pw.allocate()?;
        pw
    }

    #[throws(ArrowDestinationError)]
    fn allocate(&mut self) {
        let builders = self
            .schema
            .iter()
            .zip(&self.value_bytes)
            .map(|(dt, &bytes)| {
                Ok(Realize::<FNewBuilder>::realize(*dt)?(
                    self.batch_size,
                    bytes,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        self.builders.replace(builders);
    }

    #[throws(ArrowDestinationError)]
    fn flush(&mut self) {
        let builders = self
            .builders
            .take()
            .unwrap_or_else(|| panic!("arrow builder is none when flush!"));
        let columns = builders
            .into_iter()
            .zip(self.schema.iter())
            .map(|(builder, &dt)| Realize::<FFinishBuilder>::realize(dt)?(builder))
            .collect::<std::result::Result<Vec<_>, crate::errors::ConnectorXError>>()?;
        self.value_bytes = columns.iter().map(|column| value_bytes(column)).collect();
        let rb = RecordBatch::try_new(Arc::clone(&self.arrow_schema), columns)?;
        if let Some(sender) = self.sender.as_ref() {
            // A gone receiver means the consumer stopped: stop reading instead of parsing
            // the rest of the query for nobody.
            sender
                .send(rb)
                .map_err(|_| anyhow!("the record batch receiver was dropped"))?;
        }

        self.current_row = 0;
        self.current_col = 0;
    }
}

/// Bytes of a string or binary column's values with an eighth more, so a slightly larger
/// next batch does not double its buffer; 0 for other types. (pg2bq patch.)
fn value_bytes(column: &arrow::array::ArrayRef) -> usize {
    use arrow::datatypes::DataType;
    match column.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary => {
            let values = column
                .to_data()
                .buffers()
                .get(1)
                .map_or(0, |buffer| buffer.len());
            values + values / 8
        }
        _ => 0,
    }
}

impl<'a> DestinationPartition<'a> for ArrowPartitionWriter {
    type TypeSystem = ArrowTypeSystem;
    type Error = ArrowDestinationError;

    #[throws(ArrowDestinationError)]
    fn finalize(&mut self) {
        if self.builders.is_some() {
            self.flush()?;
        }
        // need to release the sender so receiver knows when the stream is exhasted
        std::mem::drop(self.sender.take());
    }

    #[throws(ArrowDestinationError)]
    fn aquire_row(&mut self, _n: usize) -> usize {
        self.current_row
    }

    fn ncols(&self) -> usize {
        self.schema.len()
    }
}

impl<'a, T> Consume<T> for ArrowPartitionWriter
where
    T: TypeAssoc<<Self as DestinationPartition<'a>>::TypeSystem> + ArrowAssoc + 'static,
{
    type Error = ArrowDestinationError;

    #[throws(ArrowDestinationError)]
    fn consume(&mut self, value: T) {
        let col = self.current_col;
        self.current_col = (self.current_col + 1) % self.ncols();
        self.schema[col].check::<T>()?;

        loop {
            match &mut self.builders {
                Some(builders) => {
                    <T as ArrowAssoc>::append(
                        builders[col]
                            .downcast_mut::<T::Builder>()
                            .ok_or_else(|| anyhow!("cannot cast arrow builder for append"))?,
                        value,
                    )?;
                    break;
                }
                None => self.allocate()?, // allocate if builders are not initialized
            }
        }

        // flush if exceed batch_size
        if self.current_col == 0 {
            self.current_row += 1;
            if self.current_row >= self.batch_size {
                self.flush()?;
                self.allocate()?;
            }
        }
    }
}
