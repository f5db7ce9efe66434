import CSwiftPrune
import SwiftPrune

@_cdecl("sp_magnitude_mask_f32")
public func spMagnitudeMaskF32(
    _ w: UnsafePointer<Float>?, _ n: Int64, _ sparsity: Double, _ maskOut: UnsafeMutablePointer<Bool>?
) -> sp_status {
    withStatus {
        let weights = try inputBuffer(w, n, "w")
        try magnitudeMask(TensorView(shape: [weights.count], buffer: weights), sparsity: sparsity,
                          into: MutableTensorView(shape: [weights.count], buffer: outputBuffer(maskOut, n, "mask_out")))
    }
}

@_cdecl("sp_magnitude_mask_f64")
public func spMagnitudeMaskF64(
    _ w: UnsafePointer<Double>?, _ n: Int64, _ sparsity: Double, _ maskOut: UnsafeMutablePointer<Bool>?
) -> sp_status {
    withStatus {
        let weights = try inputBuffer(w, n, "w")
        try magnitudeMask(TensorView(shape: [weights.count], buffer: weights), sparsity: sparsity,
                          into: MutableTensorView(shape: [weights.count], buffer: outputBuffer(maskOut, n, "mask_out")))
    }
}

func checkPruningSignatures() {
    var maskF32 = sp_magnitude_mask_f32; implements(&maskF32, spMagnitudeMaskF32)
    var maskF64 = sp_magnitude_mask_f64; implements(&maskF64, spMagnitudeMaskF64)
}
