// SwiftPM needs one source file per C target; the function is static inline
// in include/swiftprune_gather.h.
#include "swiftprune_gather.h"
