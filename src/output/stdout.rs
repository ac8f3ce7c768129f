//! The stdout output: Graphite plaintext lines on standard output, for
//! trying carat out and for piping into other tools.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::encode::encode_batch;
use super::OutputBatch;
use crate::stats::OutputStats;

/// Writes each batch as it comes until the queue closes.
pub async fn run(name: String, mut queue: mpsc::Receiver<OutputBatch>, stats: Arc<OutputStats>) {
    let mut stdout = tokio::io::stdout();
    let mut buf = Vec::with_capacity(8192);
    let mut failed = false;
    stats.connected.store(true, Ordering::Relaxed);
    stats.set_limits(0, std::time::Duration::ZERO);
    while let Some(batch) = queue.recv().await {
        buf.clear();
        encode_batch(&mut buf, &batch);
        // One line per metric: count them as they are encoded rather than
        // scanning the buffer again.
        let mut lines = batch.len() as u64;
        while let Ok(more) = queue.try_recv() {
            encode_batch(&mut buf, &more);
            lines += more.len() as u64;
        }
        match stdout.write_all(&buf).await.and(stdout.flush().await) {
            Ok(()) => {
                OutputStats::add(&stats.sent, lines);
                failed = false;
            }
            Err(e) => {
                OutputStats::add(&stats.errors, 1);
                stats.record_drops(lines);
                if !failed {
                    tracing::error!(output = %name, "cannot write to standard output: {e}; counting drops");
                    failed = true;
                }
            }
        }
    }
}
