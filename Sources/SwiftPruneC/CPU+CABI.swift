import CSwiftPrune
import SwiftPrune

@_cdecl("sp_cpu_has_avx512")
public func spCPUHasAVX512() -> Int32 {
    CPUFeatures.hasAVX512 ? 1 : 0
}

func checkCPUSignatures() {
    var hasAVX512 = sp_cpu_has_avx512; implements(&hasAVX512, spCPUHasAVX512)
}
