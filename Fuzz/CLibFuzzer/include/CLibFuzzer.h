#ifndef CLIBFUZZER_H
#define CLIBFUZZER_H

#include <stddef.h>
#include <stdint.h>

// libFuzzer's entry for a program with its own main (compiler-rt's FuzzerInterface.h).
// Linked only in the fuzz build (-sanitize=fuzzer); the replay build never calls it.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
