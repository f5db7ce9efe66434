/// The element types a safetensors file may hold, named as in its header.
public enum SafetensorsDType: String, CaseIterable, Sendable {
    case bool = "BOOL"
    case uint8 = "U8"
    case int8 = "I8"
    case float8E5M2 = "F8_E5M2"
    case float8E4M3 = "F8_E4M3"
    case int16 = "I16"
    case uint16 = "U16"
    case float16 = "F16"
    case bfloat16 = "BF16"
    case int32 = "I32"
    case uint32 = "U32"
    case float32 = "F32"
    case int64 = "I64"
    case uint64 = "U64"
    case float64 = "F64"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .bool, .uint8, .int8, .float8E5M2, .float8E4M3: return 1
        case .int16, .uint16, .float16, .bfloat16: return 2
        case .int32, .uint32, .float32: return 4
        case .int64, .uint64, .float64: return 8
        }
    }

    /// The header name as a NUL-terminated static C string (for the C ABI).
    public var staticName: StaticString {
        switch self {
        case .bool: return "BOOL"
        case .uint8: return "U8"
        case .int8: return "I8"
        case .float8E5M2: return "F8_E5M2"
        case .float8E4M3: return "F8_E4M3"
        case .int16: return "I16"
        case .uint16: return "U16"
        case .float16: return "F16"
        case .bfloat16: return "BF16"
        case .int32: return "I32"
        case .uint32: return "U32"
        case .float32: return "F32"
        case .int64: return "I64"
        case .uint64: return "U64"
        case .float64: return "F64"
        }
    }

    /// The dtype named `name`, or a ``SwiftPruneError`` listing the supported ones.
    public static func named(_ name: String) throws -> SafetensorsDType {
        guard let dtype = SafetensorsDType(rawValue: name) else {
            throw SwiftPruneError.value(
                "unsupported safetensors dtype \"\(name)\" (supported: \(allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return dtype
    }
}
