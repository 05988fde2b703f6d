/*
 * test_exports.c — libcpeft.so exports exactly the public API: every dynamic symbol it defines
 * (nm -D --defined-only) is a function include/cpeft.h declares with CP_API, and every such function
 * is exported (a definition compiled without seeing its CP_API declaration would be hidden by
 * -fvisibility=hidden). Also: no function in the header is declared without CP_API, the soname carries
 * the ABI version, and cp_abi_version() / cp_version() agree with the header.
 *
 * Names that begin with '_' are the toolchain's (_init, _fini, the sanitizers' __asan_* in the ASan
 * build): reserved identifiers no cpeft source may define; they are listed, not counted.
 */
#include "test.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "io/fsutil.h"

#include <ctype.h>
#include <stdlib.h>

#define MAX_NAMES 1024

typedef struct {
    char *v[MAX_NAMES];
    int n;
} names;

static void names_add(names *s, const char *p, size_t len) {
    if (s->n == MAX_NAMES) return;
    char *c = malloc(len + 1);
    memcpy(c, p, len);
    c[len] = '\0';
    s->v[s->n++] = c;
}

static int names_has(const names *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], name)) return 1;
    return 0;
}

static void names_free(names *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    s->n = 0;
}

/* The header's text without comments (block and line), strings kept. */
static char *strip_comments(const char *s) {
    size_t n = strlen(s), w = 0;
    char *o = malloc(n + 1);
    for (size_t i = 0; i < n;) {
        if (s[i] == '/' && s[i + 1] == '*') {
            const char *end = strstr(s + i + 2, "*/");
            i = end ? (size_t)(end - s) + 2 : n;
            o[w++] = ' ';
        } else if (s[i] == '/' && s[i + 1] == '/') {
            while (i < n && s[i] != '\n') i++;
        } else {
            o[w++] = s[i++];
        }
    }
    o[w] = '\0';
    return o;
}

/* The functions a header declares: for each top-level declaration (text up to ';' outside braces and
 * preprocessor lines) of the form "... NAME(...)" — a function, not a function pointer "(*NAME)" —
 * NAME goes to `api` when the declaration begins with CP_API, else to `unmarked`. */
static void header_functions(const char *text, names *api, names *unmarked) {
    char *s = strip_comments(text);
    int depth = 0;
    const char *decl = NULL;
    for (char *p = s; *p; p++) {
        if ((p == s || p[-1] == '\n') && *p == '#') { /* a preprocessor line, with continuations */
            while (*p && !(*p == '\n' && p[-1] != '\\')) p++;
            if (!*p) break;
            continue;
        }
        if (*p == '{') { /* a struct or enum body; extern "C" { opens no scope */
            if (!decl || strncmp(decl, "extern", 6)) depth++;
            decl = NULL;
            continue;
        }
        if (*p == '}') { if (depth > 0) depth--; continue; }
        if (depth > 0) continue;
        if (!decl && !isspace((unsigned char)*p) && *p != ';') decl = p;
        if (*p != ';' || !decl) continue;
        /* decl .. p is one declaration: the first identifier followed by '(' names it */
        const char *q = decl, *paren = NULL;
        for (; q < p; q++)
            if (*q == '(') { paren = q; break; }
        if (paren && strncmp(decl, "typedef", 7)) {
            const char *e = paren;
            while (e > decl && isspace((unsigned char)e[-1])) e--;
            const char *b = e;
            while (b > decl && (isalnum((unsigned char)b[-1]) || b[-1] == '_')) b--;
            if (e > b) names_add(strncmp(decl, "CP_API", 6) ? unmarked : api, b, (size_t)(e - b));
        }
        decl = NULL;
    }
    free(s);
}

static const char *build_dir(void) {
    static char dir[1024];
    const char *b = getenv("CPEFT_BUILD"), *bin = getenv("CPEFT_BIN");
    if (b) return b;
    if (bin && strrchr(bin, '/')) {
        snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(bin, '/') - bin), bin);
        return dir;
    }
    return "build";
}

/* The parser on a header made up here: it must find marked and unmarked functions and skip the rest. */
TEST(header_parser_finds_marked_and_unmarked_functions) {
    const char *h = "#define CP_API __attribute__((visibility(\"default\")))\n"
                    "/* cp_commented(void); */\n"
                    "typedef struct { int (*on_x)(void *u); int n; } cp_opts;\n"
                    "typedef int (*cp_fn)(int);\n"
                    "CP_API cp_status cp_alpha(cp_model **out,\n"
                    "                          const char *dir);\n"
                    "CP_API const char *cp_beta(void); // cp_gamma(int);\n"
                    "int cp_forgotten(int x);\n"
                    "#ifdef __cplusplus\nextern \"C\" {\n#endif\n"
                    "CP_API void cp_delta(int *p);\n";
    names api = {0}, unmarked = {0};
    header_functions(h, &api, &unmarked);
    CHECK(api.n == 3 && names_has(&api, "cp_alpha") && names_has(&api, "cp_beta") && names_has(&api, "cp_delta"),
          "%d marked functions found (want cp_alpha, cp_beta, cp_delta)", api.n);
    CHECK(unmarked.n == 1 && names_has(&unmarked, "cp_forgotten"), "%d unmarked functions found (want cp_forgotten)", unmarked.n);
    names_free(&api);
    names_free(&unmarked);
}

TEST(shared_library_exports_exactly_the_header) {
    char *text;
    size_t len;
    CHECK_OK(cp_read_file("include/cpeft.h", &text, &len));
    if (!text) return;
    names api = {0}, unmarked = {0}, exported = {0}, toolchain = {0};
    header_functions(text, &api, &unmarked);
    cp_free(text);
    for (int i = 0; i < unmarked.n; i++) CHECK(0, "include/cpeft.h declares %s without CP_API: it would not be exported", unmarked.v[i]);

    char cmd[2048], line[1024];
    snprintf(cmd, sizeof cmd, "nm -D --defined-only %s/libcpeft.so 2>&1", build_dir());
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL, "%s", cmd);
    if (!p) return;
    while (fgets(line, sizeof line, p)) {
        /* "0000000000012340 T cp_model_load" (or "... T cp_x@@VERSION") */
        char addr[64], type[8], name[512];
        if (sscanf(line, "%63s %7s %511s", addr, type, name) != 3) {
            CHECK(0, "nm: %s", line);
            continue;
        }
        char *at = strchr(name, '@');
        if (at) *at = '\0';
        names_add(name[0] == '_' ? &toolchain : &exported, name, strlen(name));
    }
    int rc = pclose(p);
    CHECK(rc == 0, "%s exited %d", cmd, rc);
    printf("  %s/libcpeft.so: %d symbols exported, %d functions declared CP_API in include/cpeft.h", build_dir(), exported.n, api.n);
    if (toolchain.n) {
        printf("; toolchain symbols not counted:");
        for (int i = 0; i < toolchain.n && i < 6; i++) printf(" %s", toolchain.v[i]);
        if (toolchain.n > 6) printf(" (+%d)", toolchain.n - 6);
    }
    printf("\n");
    CHECK(api.n >= 60 && exported.n > 0, "the header parse found %d functions, nm %d symbols: too few to be right", api.n, exported.n);
    for (int i = 0; i < exported.n; i++)
        CHECK(names_has(&api, exported.v[i]), "libcpeft.so exports %s, which include/cpeft.h does not declare", exported.v[i]);
    for (int i = 0; i < api.n; i++)
        CHECK(names_has(&exported, api.v[i]), "include/cpeft.h declares %s but libcpeft.so does not export it (its definition "
              "does not see the CP_API declaration: include cpeft.h there)", api.v[i]);
    names_free(&api);
    names_free(&unmarked);
    names_free(&exported);
    names_free(&toolchain);
}

TEST(soname_and_abi_version) {
    char cmd[2048], out[4096] = "", want[64];
    snprintf(cmd, sizeof cmd, "objdump -p %s/libcpeft.so 2>&1 | grep SONAME", build_dir());
    FILE *p = popen(cmd, "r");
    if (p) {
        size_t n = fread(out, 1, sizeof out - 1, p);
        out[n] = '\0';
        pclose(p);
    }
    snprintf(want, sizeof want, "libcpeft.so.%d\n", CPEFT_ABI_VERSION);
    CHECK(strstr(out, want) != NULL, "soname: want %s, objdump says: %s", want, out);
    CHECK(cp_abi_version() == CPEFT_ABI_VERSION, "cp_abi_version() %d, header %d", cp_abi_version(), CPEFT_ABI_VERSION);
    CHECK(!strcmp(cp_version(), CPEFT_VERSION), "cp_version() %s, header %s", cp_version(), CPEFT_VERSION);
    printf("  soname %s", want);
}

int main(void) {
    RUN(header_parser_finds_marked_and_unmarked_functions);
    RUN(shared_library_exports_exactly_the_header);
    RUN(soname_and_abi_version);
    return test_summary();
}
