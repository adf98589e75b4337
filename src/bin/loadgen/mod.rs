//! Helpers of `junction-loadgen`: a latency histogram and process probes.
pub mod hist;
pub mod sys;
