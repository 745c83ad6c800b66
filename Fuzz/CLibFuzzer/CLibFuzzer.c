// Declarations only (include/CLibFuzzer.h): the definitions are libFuzzer's.
#include "CLibFuzzer.h"
