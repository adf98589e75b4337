//! Helpers of `junction-loadgen`: a latency histogram, the payload template and process probes.
pub mod hist;
pub mod payload;
pub mod sys;
