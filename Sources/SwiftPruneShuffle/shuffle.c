// SwiftPM needs one source file per C target; the functions are static inline
// in include/swiftprune_shuffle.h.
#include "swiftprune_shuffle.h"
