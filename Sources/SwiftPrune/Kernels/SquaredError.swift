#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

/// The two sums behind a relative Frobenius error, `‖a‖²` and `‖a − b‖²`, in
/// one streaming pass: float32 inputs, float64 sums (each product widened
/// before it is added), so a compression report costs one read of the two
/// tensors instead of NumPy's chunked float64 copies.
public enum SquaredError {
    /// `(Σ aᵢ², Σ (aᵢ − bᵢ)²)` over equal-length `a` and `b`, in float64.
    /// Non-finite inputs give non-finite sums (the caller decides).
    public static func sums(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>) throws -> (norm: Double, difference: Double) {
        try checkLengths(a.count, b.count)
        let x = a.baseAddress, y = b.baseAddress
        return splitSums(a.count) { start, count in partialSums(x! + start, y! + start, count) }
    }

    /// The same sums with `a` given as bfloat16 bit patterns (the top half of
    /// a float32, widened exactly): a bfloat16 checkpoint's report needs no
    /// float32 copy of the original.
    public static func sums(bfloat16 a: UnsafeBufferPointer<UInt16>, _ b: UnsafeBufferPointer<Float>) throws -> (norm: Double, difference: Double) {
        try checkLengths(a.count, b.count)
        let x = a.baseAddress, y = b.baseAddress
        return splitSums(a.count) { start, count in partialSums(bfloat16: x! + start, y! + start, count) }
    }

    private static func checkLengths(_ a: Int, _ b: Int) throws {
        guard a == b else { throw SwiftPruneError.value("the two tensors have \(a) and \(b) entries") }
    }

    /// `count` entries split over the workers; each worker's `(norm, difference)`
    /// from `partial(start, count)`, added in worker order (deterministic).
    private static func splitSums(_ count: Int, _ partial: (Int, Int) -> (Double, Double)) -> (norm: Double, difference: Double) {
        guard count > 0 else { return (0, 0) }
        let workers = Threading.workerCount(for: count, minimumPerWorker: 1 << 20)
        var sums = [(Double, Double)](repeating: (0, 0), count: workers)
        sums.withUnsafeMutableBufferPointer { out in
            let results = out.baseAddress!
            parallelFor(workers: workers) { worker in
                let range = partitionRange(count, parts: workers, index: worker)
                results[worker] = partial(range.lowerBound, range.count)
            }
        }
        return sums.reduce((0, 0)) { ($0.0 + $1.0, $0.1 + $1.1) }
    }

    @inline(__always)
    private static func partialSums(bfloat16 x: UnsafePointer<UInt16>, _ y: UnsafePointer<Float>, _ count: Int) -> (Double, Double) {
        var lanes = SquaredErrorLanes()
        var i = 0
        #if arch(x86_64)
        while i + 8 <= count {
            let halves = UnsafeRawPointer(x + i).loadUnaligned(as: __m128i.self)
            let widened = _mm256_slli_epi32(_mm256_cvtepu16_epi32(halves), 16)
            let a = unsafeBitCast(widened, to: SIMD8<Float>.self)
            let b = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
            lanes.add(a, b)
            i += 8
        }
        #endif
        var (norm, difference) = lanes.sums
        while i < count {
            let a = Double(Float(bitPattern: UInt32(x[i]) << 16)), e = a - Double(y[i])
            norm += a * a
            difference += e * e
            i += 1
        }
        return (norm, difference)
    }

    /// One worker's sums: four float64 lanes of each, then the tail.
    @inline(__always)
    private static func partialSums(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ count: Int) -> (Double, Double) {
        var lanes = SquaredErrorLanes()
        var i = 0
        while i + 8 <= count {
            let a = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            let b = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
            lanes.add(a, b)
            i += 8
        }
        var (norm, difference) = lanes.sums
        while i < count {
            let a = Double(x[i]), e = a - Double(y[i])
            norm += a * a
            difference += e * e
            i += 1
        }
        return (norm, difference)
    }
}
