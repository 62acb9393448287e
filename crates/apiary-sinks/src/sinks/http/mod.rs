//! HTTP sinks for SIEMs and collectors: Splunk HEC, Elasticsearch/OpenSearch `_bulk`, Sumo
//! Logic and HoneyDB. One batch is one request (HoneyDB: one request per event, its API takes
//! one record); 429 and 5xx are retried, 400/413/422 mean the batch itself is bad.

mod client;
mod config;
mod sink;

pub(crate) use client::{Http, check_status};
pub use config::{ElasticsearchConfig, HoneydbConfig, SplunkHecConfig, SumologicConfig};
pub use sink::{ElasticsearchSink, HoneydbSink, SplunkHecSink, SumologicSink};
