#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif
import Synchronization

/// Writes a large keep-mask with non-temporal (streaming) stores.
///
/// A plain store first reads the destination's cache line (read for
/// ownership), so a mask written after a pass that streamed its weights
/// through the caches costs twice its size in memory traffic. Streaming
/// stores skip that read. The mask bytes are produced in an L1-resident
/// stage of ``blockBytes`` bytes by a caller's `fill`, then copied out with
/// 32-byte streaming stores; the unaligned head and tail (under 32 bytes
/// each) are written plainly.
///
/// Masks under ``threshold`` bytes are written plainly by the callers: they
/// fit the private caches, where the caller's next read finds them.
enum StreamedMaskWrite {
    /// Masks of at least this many bytes are streamed: twice the 1 MiB L2 of
    /// two Zen 3 cores, so any smaller mask is left in cache for its reader.
    static let threshold = 2 << 20
    /// The stage: small enough for L1 next to the weights being read.
    static let blockBytes = 4096

    /// Writes `mask[p]` for `p` in `range`; `fill(into, p, n)` must write the
    /// bytes of flat positions `p ..< p + n` to `into[0 ..< n]`. Issues the
    /// fence that orders the streaming stores before the caller's next step.
    @inline(__always)
    static func write(_ mask: UnsafeMutablePointer<Bool>, _ range: Range<Int>,
                      fill: (UnsafeMutablePointer<Bool>, Int, Int) -> Void) {
        guard !range.isEmpty else { return }
        var p = range.lowerBound
        let misalignment = Int(bitPattern: mask + p) & 31
        let head = misalignment == 0 ? 0 : Swift.min(range.count, 32 &- misalignment)
        if head > 0 { fill(mask + p, p, head); p &+= head }
        let middleEnd = p &+ ((range.upperBound &- p) & ~31)
        #if arch(x86_64)
        if p < middleEnd {
            withUnsafeTemporaryAllocation(byteCount: blockBytes, alignment: 64) { raw in
                let stage = raw.baseAddress!.assumingMemoryBound(to: Bool.self)
                while p < middleEnd {
                    let n = Swift.min(blockBytes, middleEnd &- p)
                    fill(stage, p, n)
                    var k = 0
                    while k < n {
                        let bytes = UnsafeRawPointer(stage + k).load(as: __m256i.self)
                        _mm256_stream_si256(UnsafeMutableRawPointer(mask + (p &+ k)).assumingMemoryBound(to: __m256i.self),
                                            bytes)
                        k &+= 32
                    }
                    p &+= n
                }
            }
            atomicMemoryFence(ordering: .sequentiallyConsistent)
        }
        #else
        if p < middleEnd { fill(mask + p, p, middleEnd &- p); p = middleEnd }
        #endif
        if p < range.upperBound { fill(mask + p, p, range.upperBound &- p) }
    }
}
