/// Sparsity rising from `initialSparsity` to `finalSparsity` (TFMOT
/// `PolynomialDecay`, Zhu and Gupta 2017):
/// `s(step) = final + (initial - final) · (1 - p)^power` with
/// `p = clamp((step - beginStep) / (endStep - beginStep), 0, 1)`
/// (`p = 1` from `beginStep` on when `endStep == beginStep`).
public struct PolynomialDecay: PruningSchedule, Equatable {
    public let initialSparsity: Double
    public let finalSparsity: Double
    public let beginStep: Int
    public let endStep: Int
    public let power: Double
    public let frequency: Int

    /// - Throws: ``SwiftPruneError`` for sparsities outside [0, 1], `beginStep < 0`,
    ///   `endStep < beginStep` (-1 is not allowed: the decay needs an end), a
    ///   non-finite power or `frequency <= 0`.
    public init(initialSparsity: Double, finalSparsity: Double, beginStep: Int, endStep: Int,
                power: Double = 3, frequency: Int = 100) throws {
        try validateScheduleSparsity(initialSparsity, "initial_sparsity")
        try validateScheduleSparsity(finalSparsity, "final_sparsity")
        try validateScheduleSteps(beginStep: beginStep, endStep: endStep, frequency: frequency, allowEndless: false)
        guard power.isFinite else { throw SwiftPruneError.value("power must be finite, got \(power)") }
        self.initialSparsity = initialSparsity
        self.finalSparsity = finalSparsity
        self.beginStep = beginStep
        self.endStep = endStep
        self.power = power
        self.frequency = frequency
    }

    public func sparsity(at step: Int) -> Double {
        let span = endStep - beginStep
        let p: Double
        if span == 0 {
            p = step >= beginStep ? 1 : 0
        } else {
            p = min(1, max(0, Double(step - beginStep) / Double(span)))
        }
        return finalSparsity + (initialSparsity - finalSparsity) * scheduleDecay(1 - p, power)
    }
}

/// `base^exponent` for `base` in [0, 1] without Foundation's `pow`.
func scheduleDecay(_ base: Double, _ exponent: Double) -> Double {
    if exponent == exponent.rounded() && abs(exponent) <= 64 {
        var result = 1.0, factor = base, e = Int(abs(exponent))
        while e > 0 { if e & 1 == 1 { result *= factor }; factor *= factor; e >>= 1 }
        return exponent < 0 ? 1 / result : result
    }
    guard base > 0 else { return exponent > 0 ? 0 : .infinity }
    return scheduleExp(exponent * scheduleLog(base))
}

/// Natural logarithm for `x > 0` by range reduction and the atanh series.
func scheduleLog(_ x: Double) -> Double {
    var m = x.significand, e = Double(x.exponent)  // x = m · 2^e, m in [1, 2)
    if m > 1.4142135623730951 { m /= 2; e += 1 }
    let z = (m - 1) / (m + 1), z2 = z * z
    var term = z, sum = 0.0, k = 1.0
    while abs(term) > 1e-18 { sum += term / k; term *= z2; k += 2 }
    return 2 * sum + e * 0.6931471805599453
}

/// `e^x` by range reduction to `|r| <= ln 2 / 2` and the Taylor series.
func scheduleExp(_ x: Double) -> Double {
    guard x.isFinite else { return x > 0 ? .infinity : 0 }
    let n = (x / 0.6931471805599453).rounded()
    let r = x - n * 0.6931471805599453
    var term = 1.0, sum = 1.0, k = 1.0
    while abs(term) > 1e-18 { term *= r / k; sum += term; k += 1 }
    return Double(sign: .plus, exponent: Int(n), significand: sum)
}
