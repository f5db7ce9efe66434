/// Several contiguous buffers seen as one flat sequence, in order: one tensor
/// is one segment; global pruning passes every tensor of a model.
///
/// Kernels split the flat sequence into equal contiguous ranges, one per
/// worker, so that worker order is flat order (needed for tie-breaking).
public struct SegmentedBuffer<Element> {
    public let segments: [UnsafeBufferPointer<Element>]
    /// `offsets[i]` is the flat index of `segments[i][0]`; `offsets.last` is the total.
    public let offsets: [Int]

    public init(_ segments: [UnsafeBufferPointer<Element>]) throws {
        var offsets = [0]
        offsets.reserveCapacity(segments.count + 1)
        for segment in segments {
            let (sum, overflow) = offsets[offsets.count - 1].addingReportingOverflow(segment.count)
            guard !overflow else { throw SwiftPruneError(.outOfMemory, "total element count overflows") }
            offsets.append(sum)
        }
        self.segments = segments
        self.offsets = offsets
    }

    public var count: Int { offsets[offsets.count - 1] }

    /// Calls `body(segment, localRange)` for each piece of the flat `range`, in order.
    @inlinable
    public func forEachPiece(of range: Range<Int>, _ body: (Int, Range<Int>) -> Void) {
        guard !range.isEmpty else { return }
        // Binary search for the segment holding range.lowerBound.
        var lo = 0, hi = segments.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if offsets[mid] <= range.lowerBound { lo = mid } else { hi = mid - 1 }
        }
        var segment = lo
        var position = range.lowerBound
        while position < range.upperBound && segment < segments.count {
            let start = offsets[segment], end = offsets[segment + 1]
            let pieceEnd = min(end, range.upperBound)
            if pieceEnd > position { body(segment, (position - start) ..< (pieceEnd - start)) }
            position = max(position, pieceEnd)
            segment += 1
        }
    }
}
