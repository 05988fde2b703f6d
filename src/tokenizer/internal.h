/*
 * internal.h — types shared by the files of the tokenizer subsystem (not public API).
 *
 * The pipeline mirrors Hugging Face `tokenizers` stage by stage so that ids and offsets agree:
 *
 *   text ──added-token split──▶ gaps ──normalizer──▶ tk_nstr ──pre-tokenizer──▶ words ──model──▶ ids
 *                                                                      post-processor ──▶ encoding
 *
 * tk_nstr is the C form of `NormalizedString`: the current (normalized) bytes plus, for every byte,
 * the span of the input it came from (absolute byte offsets into the UTF-8-clean input). A view
 * of unmodified input has no alignment array (al == NULL); its alignments are the spans of the
 * characters, computed on demand. Transformations follow `NormalizedString::transform_range`
 * exactly (a char with change 0 replaces one old char and takes its alignment, change +1 is
 * inserted and takes the alignment of the byte before it, change -n also swallows n old chars),
 * because that rule decides the offsets users see.
 *
 * Pre-tokenizers run depth-first: each split is handed to the next stage through a callback as
 * soon as it exists, so no list of splits is ever built for a whole document.
 */
#ifndef CP_TOKENIZER_INTERNAL_H
#define CP_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/strmap.h"
#include "core/utf8.h"
#include "tokenizer/tokenizer.h"

typedef struct cJSON cJSON;

/* ---- character classes (charclass.c, unicode8.c); UTF-8 coding is core/utf8.h ---------------- */

/* Older spellings of core functions, kept for tests/unit/test_tokenizer.c. */
#define tk_utf8_encode cp_utf8_encode
#define tk_strmap_init cp_strmap_init

int tk_is_whitespace(uint32_t c);     /* Rust char::is_whitespace (White_Space) */
int tk_is_numeric(uint32_t c);        /* Rust char::is_numeric: Nd, Nl, No */
int tk_is_word_char(uint32_t c);      /* Rust regex \w: Alphabetic, M*, Nd, Pc, Join_Control */
int tk_is_cjk(uint32_t c);            /* BERT's "Chinese character" ranges */
/* unicode8.c: the classes tokenizers takes from crates with Unicode 8.0-era tables, and its lowercase */
int tk_is_punctuation(uint32_t c);    /* ASCII punctuation or P* (BertPreTokenizer, Punctuation) */
int tk_is_bert_control(uint32_t c);   /* BertNormalizer clean_text's is_control: Cc Cf Co */
int tk_is_mark_nonspacing(uint32_t c); /* Mn (BertNormalizer strip_accents) */
int tk_is_mark(uint32_t c);           /* combining marks (the StripAccents normalizer) */
/* Full lowercase mapping, tokenizers' (Rust char::to_lowercase, newer Unicode than utf8proc's);
 * writes up to 3 chars, returns the count. */
int tk_to_lower(uint32_t c, uint32_t out[3]);

/* ---- hash maps and buffers (strmap.c; the string → id map is core/strmap.h) --------------------- */

/* uint64 → (uint32, uint32) map for BPE merges: (left id, right id) → (rank, new id). */
typedef struct { uint64_t *keys; uint32_t *v1, *v2; size_t cap, n; } tk_pairmap;
void tk_pairmap_free(tk_pairmap *m);
int tk_pairmap_put(tk_pairmap *m, uint64_t key, uint32_t v1, uint32_t v2);
int tk_pairmap_get(const tk_pairmap *m, uint64_t key, uint32_t *v1, uint32_t *v2);

/* Growable byte buffer. */
typedef struct { char *s; size_t len, cap; } tk_buf;
int tk_buf_reserve(tk_buf *b, size_t extra);
int tk_buf_append(tk_buf *b, const char *s, size_t n);
int tk_buf_putc(tk_buf *b, uint32_t c); /* appends c as UTF-8 */
void tk_buf_free(tk_buf *b);

/* ---- normalized strings (nstr.c) -------------------------------------------------------------- */

typedef struct { uint32_t start, end; } tk_span;

typedef struct {
    const char *s;     /* normalized bytes (not NUL-terminated) */
    size_t len;
    const tk_span *al; /* per byte of s, or NULL: s is unmodified input at absolute offset orig_start */
    size_t orig_start, orig_end; /* the input span this string stands for */
    char *own_s;       /* owned storage behind s / al, if any */
    tk_span *own_al;
} tk_nstr;

/* A view of unmodified input bytes [start, end) (valid UTF-8). */
tk_nstr tk_nstr_view(const char *input, size_t start, size_t end);
void tk_nstr_free(tk_nstr *ns);
/* Alignment of byte i of the normalized string. */
tk_span tk_nstr_align(const tk_nstr *ns, size_t i);
/* Original span of normalized bytes [a, b), as `convert_offsets(Range::Normalized(a..b))`
 * followed by the shift `into_encoding` applies. */
void tk_nstr_convert(const tk_nstr *ns, size_t a, size_t b, size_t *start, size_t *end);
/* A slice (normalized range [a, b), on char boundaries) sharing ns's storage. */
tk_nstr tk_nstr_slice(const tk_nstr *ns, size_t a, size_t b);

/* One step of a transformation: the new char and its change (see the header comment). */
typedef struct { uint32_t c; int32_t change; } tk_change;
/* Replaces normalized bytes [a, b) by the chars of ops (transform_range). */
int tk_nstr_transform_range(tk_nstr *ns, size_t a, size_t b, const tk_change *ops, size_t nops,
                            size_t initial_offset);
int tk_nstr_transform(tk_nstr *ns, const tk_change *ops, size_t nops, size_t initial_offset);
int tk_nstr_prepend(tk_nstr *ns, const char *s);
/* Replaces each [starts[i], ends[i]) (sorted, disjoint) by content, like NormalizedString::replace. */
int tk_nstr_replace_matches(tk_nstr *ns, const size_t *starts, const size_t *ends, size_t n,
                            const char *content);
int tk_nstr_lrstrip(tk_nstr *ns, int left, int right);

/* Growable list of changes, used by normalizers to build a transformation. */
typedef struct { tk_change *v; size_t n, cap; } tk_changes;
int tk_changes_push(tk_changes *c, uint32_t ch, int32_t change);

/* ---- patterns and splitting (split.c) --------------------------------------------------------- */

typedef enum {
    TK_SPLIT_REMOVED, TK_SPLIT_ISOLATED, TK_SPLIT_MERGED_WITH_PREVIOUS, TK_SPLIT_MERGED_WITH_NEXT,
    TK_SPLIT_CONTIGUOUS
} tk_split_behavior;

/* A compiled regular expression (PCRE2, Oniguruma syntax translated; see regex.c). */
typedef struct tk_regex tk_regex;
/* Compiles an Oniguruma-syntax pattern; what names the owner for the error message. */
int tk_regex_compile(tk_regex **out, const char *pattern, size_t len, const char *what);
/* Compiles a literal string pattern. */
int tk_regex_literal(tk_regex **out, const char *lit, size_t len);
void tk_regex_free(tk_regex *re);

/* A list of (start, end, is_match) covering a string, as `Pattern::find_matches` returns. */
typedef struct { size_t start, end; int is_match; } tk_match;
typedef struct { tk_match *v; size_t n, cap; } tk_matches;
int tk_matches_push(tk_matches *m, size_t start, size_t end, int is_match);
int tk_regex_find_matches(const tk_regex *re, const char *s, size_t len, tk_matches *out);
/* Same for a char predicate. */
int tk_pred_find_matches(int (*pred)(uint32_t c, const void *arg), const void *arg, const char *s,
                         size_t len, tk_matches *out);
/* Applies the behavior to matches (in place) and drops removed ones; is_match is then "keep". */
int tk_matches_apply_behavior(tk_matches *m, tk_split_behavior behavior);

/* ---- components --------------------------------------------------------------------------------
 * Each is a tagged struct parsed from its JSON object by <kind>_from_json (path names the JSON
 * location for messages, e.g. "normalizer.normalizers[1]"): tk_component_from_json with the
 * kind's class (json.c reads the "type" and a Sequence's children). */

/* The components of a Sequence (void * to each child), with the index of the array element each
 * came from; null elements are skipped. */
typedef struct { void **v; int *index; size_t n; } tk_children;

/* What every component struct begins with: its kind (its enum value, the index of its "type" in
 * the class's names) and, for a Sequence, its children; both set by tk_component_from_json. */
typedef struct {
    int kind;
    tk_children children;
} tk_component_head;

/* A kind of pipeline component read from tokenizer.json by its "type" (normalizer, pre_tokenizer,
 * decoder, post_processor), described by one table. Its enum ends with Sequence, whose children
 * are components of the same kind. */
typedef struct {
    const char *what;              /* "decoder", for messages */
    const char *const *names;      /* the "type" names, indexed by the enum: seq_kind + 1 of them */
    int seq_kind;                  /* the enum value of "Sequence" (the last) */
    const char *seq_key;           /* the Sequence's array of children ("decoders") */
    size_t size;                   /* of the component's struct (a tk_component_head first), zeroed */
    int (*parse)(void *obj, const cJSON *j, const char *path); /* the fields of the kind in the head */
    void (*release)(void *obj);    /* frees what the struct owns besides its head */
} tk_component_class;
/* Reads the component object j into *out (out: the address of a pointer to the component's
 * struct; NULL when j is absent or null). A missing or unknown "type" is an error naming path,
 * cls->what and the supported types (in byte order); a Sequence's children are read with the
 * same class. */
int tk_component_from_json(const tk_component_class *cls, void *out, const cJSON *j, const char *path);
/* Frees a component (NULL: nothing), its Sequence children with it. */
void tk_component_free(const tk_component_class *cls, void *obj);
extern const tk_component_class tk_normalizer_class, tk_pretok_class, tk_postproc_class, tk_decoder_class;

typedef struct tk_normalizer tk_normalizer;
static inline int tk_normalizer_from_json(tk_normalizer **out, const cJSON *j, const char *path) {
    return tk_component_from_json(&tk_normalizer_class, out, j, path);
}
static inline void tk_normalizer_free(tk_normalizer *n) { tk_component_free(&tk_normalizer_class, n); }
int tk_normalizer_apply(const tk_normalizer *n, tk_nstr *ns);

/* Receives each final split of a pre-tokenizer (its storage is valid only during the call). */
typedef int (*tk_split_fn)(void *ctx, tk_nstr *split);
typedef struct tk_pretok tk_pretok;
static inline int tk_pretok_from_json(tk_pretok **out, const cJSON *j, const char *path) {
    return tk_component_from_json(&tk_pretok_class, out, j, path);
}
static inline void tk_pretok_free(tk_pretok *p) { tk_component_free(&tk_pretok_class, p); }
/* Splits ns (which it may modify) and calls emit for each non-empty split in order. */
int tk_pretok_apply(const tk_pretok *p, tk_nstr *ns, tk_split_fn emit, void *ctx);
/* Whether p is ByteLevel or a Sequence holding one (add_prefix_space is then a byte-level rule). */
int tk_pretok_is_byte_level(const tk_pretok *p);

/* Output of a model for one word: ids and byte spans within the word's normalized string. */
typedef struct { int32_t *ids; uint32_t *starts, *ends; size_t n, cap; } tk_wordtoks;
int tk_wordtoks_push(tk_wordtoks *w, int32_t id, size_t start, size_t end);

/* Per-encoding scratch state that models may keep between words (and between calls that reuse
 * the same cp_encoding): the BPE word cache and work buffers. gen identifies the tokenizer it
 * belongs to; a scratch met with another tokenizer is cleared. */
typedef struct tk_wcache tk_wcache;
typedef struct {
    uint64_t gen;
    tk_wcache *cache;
    void *sym; size_t sym_cap;   /* BPE symbols */
    void *heap; size_t heap_cap; /* BPE merge queue */
    tk_buf buf;                  /* model work string */
    double *dbl; size_t dbl_cap; /* Unigram lattice scores */
    int32_t *ints; size_t ints_cap;
} tk_scratch;
void tk_scratch_clear(tk_scratch *sc);

typedef enum { TK_MODEL_BPE, TK_MODEL_WORDPIECE, TK_MODEL_WORDLEVEL, TK_MODEL_UNIGRAM } tk_model_type;
typedef struct tk_model tk_model;
int tk_model_from_json(tk_model **out, const cJSON *j, const char *path);
void tk_model_free(tk_model *m);
/* Appends the tokens of one word (normalized bytes s[0..len)). */
int tk_model_tokenize(const tk_model *m, const char *s, size_t len, tk_wordtoks *out, tk_scratch *sc);
int32_t tk_model_token_to_id(const tk_model *m, const char *s, size_t len);
const char *tk_model_id_to_token(const tk_model *m, int32_t id, size_t *len);
size_t tk_model_vocab_size(const tk_model *m); /* number of entries (HF get_vocab_size) */
int32_t tk_model_max_id(const tk_model *m);
tk_model_type tk_model_kind(const tk_model *m);

/* Model constructors used by the legacy loaders (legacy_files.c) and the JSON parsers. */
typedef struct {
    cp_strmap vocab;          /* token → id */
    char **merges_a, **merges_b; size_t n_merges; /* merge list in rank order */
    const char *unk_token, *continuing_subword_prefix, *end_of_word_suffix;
    int fuse_unk, byte_fallback, ignore_merges;
} tk_bpe_config;
int tk_bpe_create(tk_model **out, tk_bpe_config *cfg, const char *path); /* takes cfg->vocab */
int tk_wordpiece_create(tk_model **out, cp_strmap *vocab, const char *unk_token,
                        const char *prefix, int max_input_chars_per_word);

/* Post-processor. */
typedef struct tk_postproc tk_postproc;
static inline int tk_postproc_from_json(tk_postproc **out, const cJSON *j, const char *path) {
    return tk_component_from_json(&tk_postproc_class, out, j, path);
}
static inline void tk_postproc_free(tk_postproc *p) { tk_component_free(&tk_postproc_class, p); }
/* Internal encoding with token strings needed by trim_offsets. */
typedef struct {
    size_t n, cap;
    int32_t *ids;
    size_t *offsets; /* 2n */
    uint8_t *special, *type_ids;
    uint32_t *trim; /* per token: (leading << 16) | trailing count of 'Ġ'/whitespace chars of its string */
    uint8_t *seq;   /* per token: input sequence it came from (0 = A, 1 = B), 255 for added specials */
} tk_enc;
int tk_enc_push(tk_enc *e, int32_t id, size_t start, size_t end, int special, int type_id,
                uint32_t trim);
/* The (leading << 16) | trailing count used by ByteLevel trim_offsets, for a token string. */
uint32_t tk_trim_counts(const char *s, size_t len);
void tk_enc_free(tk_enc *e);
/* Combines the encodings of a (and b, may be NULL) into out. token_str gives token strings
 * (for ByteLevel trim_offsets). */
struct cp_tokenizer;
int tk_postproc_apply(const tk_postproc *p, const struct cp_tokenizer *tok, tk_enc *a, tk_enc *b,
                      int add_special, tk_enc *out);
/* Checks that every id the processor adds names a token of tok (model or added); errors name the
 * JSON location under path ("post_processor.special_tokens[\"[CLS]\"].ids[0]: id 9 is not in ..."). */
int tk_postproc_check_ids(const tk_postproc *p, const struct cp_tokenizer *tok, const char *path);
/* Whether the processor trims offsets by token whitespace (needs tk_enc.trim). */
int tk_postproc_trims(const tk_postproc *p);
/* Number of tokens the processor adds (for the bos/eos report). */
void tk_postproc_added(const tk_postproc *p, const struct cp_tokenizer *tok, int *adds_bos,
                       int *adds_eos, int32_t *first_id, int32_t *last_id);

/* Decoder. Works on a list of token strings. */
typedef struct { char **v; size_t *len; size_t n, cap; } tk_strlist;
int tk_strlist_push(tk_strlist *l, const char *s, size_t n);
void tk_strlist_free(tk_strlist *l);
typedef struct tk_decoder tk_decoder;
static inline int tk_decoder_from_json(tk_decoder **out, const cJSON *j, const char *path) {
    return tk_component_from_json(&tk_decoder_class, out, j, path);
}
static inline void tk_decoder_free(tk_decoder *d) { tk_component_free(&tk_decoder_class, d); }
/* Transforms the list in place (decode_chain). */
int tk_decoder_apply(const tk_decoder *d, tk_strlist *toks);
int tk_decoder_create_simple(tk_decoder **out, const char *type); /* "ByteLevel", "WordPiece" */

/* ---- added tokens (added_tokens.c) ------------------------------------------------------------ */

typedef struct {
    char *content; size_t len;
    int32_t id;
    int single_word, lstrip, rstrip, normalized, special;
    char *norm_content; size_t norm_len; /* content after the normalizer (when normalized) */
} tk_added_token;

/* A byte trie over token contents for leftmost-longest matching. */
typedef struct tk_trie tk_trie;
typedef struct {
    tk_added_token *v; size_t n, cap;
    cp_strmap by_content;          /* content → index in v */
    tk_trie *raw_trie, *norm_trie; /* tokens with normalized == 0 / == 1 */
} tk_added_vocab;

void tk_added_free(tk_added_vocab *av);
int tk_added_add(tk_added_vocab *av, const tk_added_token *t);
/* Builds the tries; call after all tokens are added and the normalizer is known. */
int tk_added_build(tk_added_vocab *av, const tk_normalizer *norm);
/* Finds added tokens in s[0..len) (leftmost-longest, with single_word/lstrip/rstrip), producing
 * matches that cover the string; is_match entries carry the token index in *token_index. */
typedef struct { size_t start, end; int32_t token; /* -1: text gap */ } tk_piece;
typedef struct { tk_piece *v; size_t n, cap; } tk_pieces;
int tk_added_split(const tk_added_vocab *av, int normalized_set, const char *s, size_t len,
                   tk_pieces *out);
const tk_added_token *tk_added_by_id(const tk_added_vocab *av, int32_t id);

/* ---- the tokenizer (tokenizer.c) -------------------------------------------------------------- */

struct cp_tokenizer {
    tk_normalizer *normalizer;
    tk_pretok *pretok;
    tk_model *model;
    tk_postproc *postproc;
    tk_decoder *decoder;
    tk_added_vocab added;
    int32_t *added_by_id_index; /* id - added_min → index in added.v, or -1 */
    int32_t added_min, added_max;
    size_t vocab_size;
    int32_t special[4];   /* bos, eos, pad, unk: id or CP_TOKEN_NONE */
    int add_bos, add_eos; /* -1: unknown (use the post-processor) */
    int clean_up_spaces;  /* tokenizer_config.json clean_up_tokenization_spaces */
    int config_loaded;    /* a tokenizer_config.json / special_tokens_map.json was read */
    int need_trim;        /* the post-processor trims offsets (ByteLevel, Roberta) */
    uint32_t *trim_by_id; /* tk_trim_counts of each model token, when need_trim */
    uint64_t generation;  /* unique per loaded tokenizer (keys encoder scratch state) */
};

/* Finishes a loaded tokenizer (added-token tables, default special tokens). */
int tk_tokenizer_finish(cp_tokenizer *tok);
/* Parses a whole tokenizer.json document. */
int tk_tokenizer_from_json(cp_tokenizer *tok, const cJSON *root);
/* Token string for an id including added tokens (content), or NULL. */
const char *tk_id_to_token(const cp_tokenizer *tok, int32_t id, size_t *len);

/* legacy_files.c */
int tk_load_vocab_merges(cp_tokenizer *tok, const char *vocab_json, const char *merges_txt);
int tk_load_vocab_txt(cp_tokenizer *tok, const char *vocab_txt, const char *dir);
/* Reads tokenizer_config.json and special_tokens_map.json (if present) before tk_tokenizer_finish:
 * add_bos/add_eos, clean_up_tokenization_spaces; */
int tk_load_config(cp_tokenizer *tok, const char *dir);
/* ... and after it: the bos/eos/pad/unk roles they name. */
int tk_apply_config_specials(cp_tokenizer *tok, const char *dir);
/* transformers' clean_up_tokenization_spaces on decoded text. */
int tk_clean_up_spaces(tk_buf *b);

/* Reads a whole file (NUL-terminated copy); *len without the NUL. */
int tk_read_file(const char *path, char **out, size_t *len);

/* ---- JSON helpers (json.c) -------------------------------------------------------------------- */

/* Each returns CP_ERR with "<path>.<key>: expected <what>" when the field has the wrong type.
 * Missing optional fields give the default. */
int tk_json_bool(const cJSON *obj, const char *key, int dflt, int *out, const char *path);
/* Integer fields are range-checked before any conversion (a double outside the target type's
 * range converts with undefined behaviour): "<path>.<key>: expected an integer from MIN to MAX,
 * got 1e+30". |min|, |max| <= 2^53. */
#define TK_JSON_MAX_INT 9007199254740992L /* 2^53 */
int tk_json_int(const cJSON *obj, const char *key, long dflt, long min, long max, long *out, const char *path);
/* (Array items: cp_json_int_in and cp_json_describe of io/json.h.) */
/* String field; *out points into the JSON (valid while it lives) or is dflt. Missing → dflt; null →
 * NULL if allow_null. */
int tk_json_str(const cJSON *obj, const char *key, const char *dflt, int allow_null,
                const char **out, const char *path);
/* A field holding a single character (Metaspace's "replacement", Strip's "content"). */
int tk_json_char(const cJSON *obj, const char *key, const char *path, uint32_t dflt, uint32_t *out);
/* The "type" tag of a component object. */
int tk_json_type(const cJSON *obj, const char *path, const char **type);

/* Builds "path.key" / "path[i]" into buf. */
const char *tk_path(char *buf, size_t n, const char *path, const char *key, long index);

#endif
