/// The float64 accumulation every report-error kernel shares: eight float32
/// pairs `(a, b)` at a time into `Σ a²` and `Σ (a − b)²`, each product widened
/// before it is added, four lanes per half so the adds pipeline.
struct SquaredErrorLanes {
    private var norm0 = SIMD4<Double>(), norm1 = SIMD4<Double>()
    private var difference0 = SIMD4<Double>(), difference1 = SIMD4<Double>()

    @inline(__always)
    mutating func add(_ a: SIMD8<Float>, _ b: SIMD8<Float>) {
        let aLow = SIMD4<Double>(a.lowHalf), aHigh = SIMD4<Double>(a.highHalf)
        let eLow = aLow - SIMD4<Double>(b.lowHalf), eHigh = aHigh - SIMD4<Double>(b.highHalf)
        norm0.addProduct(aLow, aLow)
        norm1.addProduct(aHigh, aHigh)
        difference0.addProduct(eLow, eLow)
        difference1.addProduct(eHigh, eHigh)
    }

    /// The lanes' totals (the caller adds its scalar tail to them).
    @inline(__always)
    var sums: (norm: Double, difference: Double) { ((norm0 + norm1).sum(), (difference0 + difference1).sum()) }
}
