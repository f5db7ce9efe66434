import CSwiftPrune
import SwiftPrune

@_cdecl("sp_matmul_f32")
public func spMatmulF32(
    _ a: UnsafePointer<Float>?, _ aTransposed: Bool, _ b: UnsafePointer<Float>?, _ bTransposed: Bool,
    _ m: Int64, _ k: Int64, _ n: Int64, _ out: UnsafeMutablePointer<Float>?
) -> sp_status {
    withStatus {
        let (rows, inner, aCount) = try matrixShape(m, k, "a")
        let (_, cols, bCount) = try matrixShape(k, n, "b")
        let (_, _, outCount) = try matrixShape(m, n, "out")
        let a = try inputBuffer(a, aCount, "a"), b = try inputBuffer(b, bCount, "b")
        let c = try outputBuffer(out, outCount, "out")
        try gemm(transA: aTransposed, transB: bTransposed, m: rows, n: cols, k: inner, alpha: 1,
                 a: a.baseAddress, lda: max(1, aTransposed ? rows : inner),
                 b: b.baseAddress, ldb: max(1, bTransposed ? inner : cols),
                 beta: 0, c: c.baseAddress, ldc: max(1, cols))
    }
}

@_cdecl("sp_squared_error_f32")
public func spSquaredErrorF32(
    _ a: UnsafePointer<Float>?, _ b: UnsafePointer<Float>?, _ n: Int64, _ normOut: UnsafeMutablePointer<Double>?,
    _ differenceOut: UnsafeMutablePointer<Double>?
) -> sp_status {
    withStatus {
        guard let normOut, let differenceOut else { throw SwiftPruneError.value("norm_out and difference_out must not be NULL") }
        let sums = try SquaredError.sums(inputBuffer(a, n, "a"), inputBuffer(b, n, "b"))
        normOut.pointee = sums.norm
        differenceOut.pointee = sums.difference
    }
}

@_cdecl("sp_squared_error_bf16_f32")
public func spSquaredErrorBF16F32(
    _ a: UnsafePointer<UInt16>?, _ b: UnsafePointer<Float>?, _ n: Int64, _ normOut: UnsafeMutablePointer<Double>?,
    _ differenceOut: UnsafeMutablePointer<Double>?
) -> sp_status {
    withStatus {
        guard let normOut, let differenceOut else { throw SwiftPruneError.value("norm_out and difference_out must not be NULL") }
        let sums = try SquaredError.sums(bfloat16: inputBuffer(a, n, "a"), inputBuffer(b, n, "b"))
        normOut.pointee = sums.norm
        differenceOut.pointee = sums.difference
    }
}

func checkMatmulSignatures() {
    var matmulF32 = sp_matmul_f32; implements(&matmulF32, spMatmulF32)
    var squaredError = sp_squared_error_f32; implements(&squaredError, spSquaredErrorF32)
    var squaredErrorBF16 = sp_squared_error_bf16_f32; implements(&squaredErrorBF16, spSquaredErrorBF16F32)
}
