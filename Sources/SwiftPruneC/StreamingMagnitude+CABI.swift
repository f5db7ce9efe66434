import CSwiftPrune
import SwiftPrune

@_cdecl("sp_magnitude_histogram_f32")
public func spMagnitudeHistogramF32(
    _ w: UnsafePointer<Float>?, _ n: Int64, _ low: UInt32, _ shift: Int32, _ bins: Int64,
    _ counts: UnsafeMutablePointer<Int64>?, _ lowBitsOut: UnsafeMutablePointer<UInt32>?,
    _ nonFiniteOut: UnsafeMutablePointer<Int64>?
) -> sp_status {
    withStatus {
        guard let lowBitsOut, let nonFiniteOut else { throw SwiftPruneError.value("low_bits_out and nonfinite_out must not be NULL") }
        guard bins >= 1 && bins <= 1 << 24 else { throw SwiftPruneError.value("bins must be in 1...2^24, got \(bins)") }
        let (lowBits, nonFinite) = try magnitudeHistogram(
            inputBuffer(w, n, "w"), low: low, shift: Int(shift), bins: Int(bins),
            into: outputBuffer(counts, bins, "counts"))
        lowBitsOut.pointee = lowBits
        nonFiniteOut.pointee = Int64(nonFinite)
    }
}

@_cdecl("sp_magnitude_threshold_mask_f32")
public func spMagnitudeThresholdMaskF32(
    _ w: UnsafePointer<Float>?, _ n: Int64, _ threshold: UInt32, _ prunedTies: Int64,
    _ maskOut: UnsafeMutablePointer<Bool>?
) -> sp_status {
    withStatus {
        try writeMagnitudeThresholdMask(inputBuffer(w, n, "w"), threshold: threshold, prunedTies: Int(prunedTies),
                                        into: outputBuffer(maskOut, n, "mask_out"))
    }
}

func checkStreamingMagnitudeSignatures() {
    var histogram = sp_magnitude_histogram_f32; implements(&histogram, spMagnitudeHistogramF32)
    var mask = sp_magnitude_threshold_mask_f32; implements(&mask, spMagnitudeThresholdMaskF32)
}
