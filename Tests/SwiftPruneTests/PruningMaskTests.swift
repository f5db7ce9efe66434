import Testing
@testable import SwiftPrune

