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
    /// From `benchmarks/mask_writers.py` (every writer forced in turn,
    /// interleaved, medians; see the README's pruning notes): the sampled
    /// one-pass writer wins from about 2^24 entries, whose sample and
    /// bracketing cost is repaid only by a pass saved over that much memory;
    /// below it the three-pass writer's plain vectorized passes win for one
    /// tensor, and the two-pass writer for several (its single histogram pass
    /// walks the segments once, where select-then-compare walks them three times).
    /// `SWIFTPRUNE_MASK_WRITER` (`three-pass`, `two-pass`, `sampled`) forces one,
    /// for such measurements.
    static func chosen(count: Int, segments: Int) -> MagnitudeMaskWriter {
        if let forced = forced { return forced }
        if count >= 1 << 24 { return .sampled }
        return segments > 1 ? .twoPass : .threePass
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
