/// The Householder reflector `H = I − τ v vᵀ` with `H x = (β, 0, …, 0)`
/// (LAPACK `dlarfg`'s convention: β has the sign opposite to `x₀`, so that
/// `x₀ − β` does not cancel). Overwrites the `length` entries of `x` with `v`
/// (`v₀ = 1`) and returns `(β, τ)`; a zero tail gives `H = I` (`τ = 0`,
/// `β = x₀`, `v = e₀`). The tail's squares are summed in order, one by one:
/// both tridiagonalizations (`SymmetricEigen.tridiagonalize` and the blocked
/// panels of `reducePanel`) take their reflectors from this one function.
@inline(__always)
func householderReflector(_ x: UnsafeMutablePointer<Double>, length: Int) -> (beta: Double, tau: Double) {
    var tail = 0.0
    for q in 1 ..< max(1, length) { tail += x[q] * x[q] }
    let x0 = x[0]
    guard tail != 0 else {
        x[0] = 1
        for q in 1 ..< max(1, length) { x[q] = 0 }
        return (x0, 0)
    }
    let norm = (x0 * x0 + tail).squareRoot()
    let beta = x0 >= 0 ? -norm : norm
    let scale = 1 / (x0 - beta)
    x[0] = 1
    for q in 1 ..< length { x[q] *= scale }
    return (beta, (beta - x0) / beta)
}
