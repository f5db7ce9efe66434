/// Worker counts of the memory-bound kernels of issue 18 (structured slice
/// norms and masks, dequantization), measured rather than guessed.
///
/// Rule: a second worker is used where, on a quiet machine, it shortened the
/// call's wall time by at least 20% (so its extra CPU time buys something);
/// below that the call stays on one thread. Data: `chrt -f 10 python
/// benchmarks/memory_threads.py --near-thresholds` (real-time priority keeps
/// the other sessions off the two cores: a stand-in for a quiet machine),
/// three runs, 1 → 2 threads, q1 wall speed-up (CPU cost):
///
/// | call | below the threshold | above it |
/// |---|---|---|
/// | structured L2, float32 weights | 5 MB: 0.97–1.05x (1.25–1.35x CPU) | 10 MB: 1.20–1.44x (0.95–1.22x), 16 MB: 1.35–1.67x |
/// | dequantize int8 → float32 | 4 MB out: 1.00–1.29x (1.16–1.19x) | 8 MB out: 1.46–1.83x (1.09–1.40x), 13 MB: 1.97–2.42x |
///
/// (8 MB of weights gave 1.09–1.35x: the threshold sits there.) Large calls
/// keep two workers: memory bandwidth scales with the cores on this VM
/// (42 MB structured 1.39–1.48x, 134 MB 1.47–1.64x, 400 MB dequantize 1.87x,
/// at 1.0–1.2x the CPU time). The CSR matvec's rule (``CSRMatrix``'s
/// `matvecDriver`) was measured the same way and left as it was.
enum MemoryBoundWorkers {
    /// Weight bytes from which structured slice norms and masks use more than one worker.
    static let structuredBytes = 8 << 20
    /// Output elements from which a dequantization uses more than one worker (8 MB of float32).
    static let dequantizeElements = 2 << 20

    /// `Threading.workerCount(for: work, minimumPerWorker:)`, or 1 when `size` is under `threshold`.
    static func count(size: Int, threshold: Int, work: Int, minimumPerWorker: Int) -> Int {
        size < threshold ? 1 : Threading.workerCount(for: work, minimumPerWorker: minimumPerWorker)
    }
}
