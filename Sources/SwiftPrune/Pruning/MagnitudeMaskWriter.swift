#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The three writers of magnitude keep-masks. They give identical masks (the
/// tests compare them); they differ in how many passes they make over the data
/// and in fixed costs, so which is fastest depends on the size.
enum MagnitudeMaskWriter: String, CaseIterable, Sendable {
    /// ``writeMagnitudeMasks(_:prune:into:)``: select, then compare (vectorized passes).
    case threePass = "three-pass"
    /// `writeMagnitudeMasksTwoPass`: a 16-bit histogram, then write and resolve one bucket.
    case twoPass = "two-pass"
    /// `writeMagnitudeMasksSampled`: a sample brackets the threshold, then one pass.
    case sampled

    /// The one place that decides which writer runs for `count` entries in
    /// `segments` tensors (one for per-tensor pruning, several for global).
    ///
    /// Measured with benchmarks/mask_writers.py (each writer forced in its own
    /// process, 3 interleaved rounds of best-of-5, 2-vCPU AMD EPYC Zen 3 VM,
    /// load ~8, round 10): the sampled writer took the least CPU at every size
    /// measured, 2^15 to 2^23 entries, at 1 and 2 threads, for one tensor at
    /// 50% and for 20 tensors at 80% — e.g. one tensor at one thread, CPU ms
    /// three-pass / two-pass / sampled: 2^15 0.16 / 0.11 / 0.07, 2^18 0.36 /
    /// 0.36 / 0.17, 2^21 2.75 / 2.72 / 1.05, 2^23 11.5 / 17.6 / 4.7. (Round 7
    /// had it slower below 2^22; its scan, sample selection and resolution
    /// have since become cheaper.) Smaller sizes were not measured: the
    /// three-pass writer stays there.
    static func chosen(count: Int, segments: Int) -> MagnitudeMaskWriter {
        if let forced = forced { return forced }
        return count >= 1 << 15 ? .sampled : .threePass
    }

    /// The writer named by `SWIFTPRUNE_MASK_WRITER`, read once; nil when unset or unknown.
    static let forced: MagnitudeMaskWriter? = {
        guard let raw = getenv("SWIFTPRUNE_MASK_WRITER") else { return nil }
        return MagnitudeMaskWriter(rawValue: String(cString: raw))
    }()

    /// Writes the masks with this writer.
    func write<S: MagnitudeOrdered>(_ data: SegmentedBuffer<S>, prune k: Int,
                                    into masks: [UnsafeMutableBufferPointer<Bool>]) throws {
        switch self {
        case .threePass: try writeMagnitudeMasks(data, prune: k, into: masks)
        case .twoPass: try writeMagnitudeMasksTwoPass(data, prune: k, into: masks)
        case .sampled: try writeMagnitudeMasksSampled(data, prune: k, into: masks, minimumCount: 0)
        }
    }
}

/// The keep-masks of ``writeMagnitudeMasks(_:prune:into:)``, written by the
/// writer ``MagnitudeMaskWriter/chosen(count:segments:)`` picks for this size.
@_specialize(where S == Float)
@_specialize(where S == Double)
func writeMagnitudeMasksFastest<S: MagnitudeOrdered>(
    _ data: SegmentedBuffer<S>, prune k: Int, into masks: [UnsafeMutableBufferPointer<Bool>]
) throws {
    try MagnitudeMaskWriter.chosen(count: data.count, segments: data.segments.count).write(data, prune: k, into: masks)
}
