/* hs_unicode_nfc: Unicode Normalization Form C (UAX #15) of UTF-8 text, the
 * "NFC" normalizer of HF tokenizer.json files (Qwen2, GPT-NeoX/Pythia). */
#ifndef HS_UNICODE_NFC_H
#define HS_UNICODE_NFC_H

#include <stddef.h>

/* NFC of valid UTF-8 text[0..len). Text that is already NFC by the cheap
 * test (no code point from U+0300 on) gives *out = NULL: use the input.
 * Otherwise *out is a malloc'd buffer of *out_len bytes (the caller frees
 * it). Returns 0, or -1 when out of memory. */
int hs_unicode_nfc(const char *text, size_t len, char **out, size_t *out_len);

/* The Unicode version of the tables (e.g. "14.0.0"). */
const char *hs_unicode_nfc_version(void);

#endif
