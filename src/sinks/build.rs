//! Building the configured sinks: each sink's section builds its own sink, and
//! [`build`] builds the ones `sinks = [...]` names, in that order.

use std::sync::Arc;

use super::file::FileSink;
use super::kafka::{KafkaConfig, KafkaSink};
use super::rabbitmq::{RabbitmqConfig, RabbitmqSink};
use super::{Sink, SinkError, SinkKind};
use crate::config::{BuildContext, StorageConfig};

/// A sink's section of the settings, which knows how to open its sink. Broker sinks
/// connect in the background, on the context's tracker and until its token is
/// cancelled: the service starts while a broker is down, and `/readyz` says so.
pub trait SinkConfig {
    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn Sink>, SinkError>;
}

/// The sections of every kind of sink.
#[derive(Clone, Copy)]
pub struct SinkConfigs<'a> {
    pub file: &'a StorageConfig,
    pub kafka: &'a KafkaConfig,
    pub rabbitmq: &'a RabbitmqConfig,
}

impl SinkConfigs<'_> {
    pub fn of(&self, kind: SinkKind) -> &dyn SinkConfig {
        match kind {
            SinkKind::File => self.file,
            SinkKind::Kafka => self.kafka,
            SinkKind::Rabbitmq => self.rabbitmq,
        }
    }
}

/// Opens the sinks of `kinds`, in order.
pub fn build(
    kinds: &[SinkKind],
    configs: SinkConfigs<'_>,
    cx: &BuildContext,
) -> Result<Vec<Arc<dyn Sink>>, SinkError> {
    kinds
        .iter()
        .map(|&kind| configs.of(kind).build(cx))
        .collect()
}

/// The file sink writes under `storage.data_dir`.
impl SinkConfig for StorageConfig {
    fn build(&self, _cx: &BuildContext) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(FileSink::open(&self.data_dir)?))
    }
}

impl SinkConfig for KafkaConfig {
    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(KafkaSink::start(self, cx)?))
    }
}

impl SinkConfig for RabbitmqConfig {
    fn build(&self, cx: &BuildContext) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(RabbitmqSink::start(self, cx)?))
    }
}
