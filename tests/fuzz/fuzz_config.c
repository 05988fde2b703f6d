/*
 * fuzz_config.c — libFuzzer target for config.json: JSON parsing (cJSON + located errors), the
 * per-architecture config parsers, and building the module tree and its repr from the result.
 * Any input must end in CP_OK or a clean error: no crash, leak, or out-of-bounds access.
 */
#include "core/alloc.h"
#include "io/json.h"
#include "models/model.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cp_set_quiet(1);
    cJSON *root = NULL;
    if (cp_json_parse((const char *)data, size, "config.json", &root) != CP_OK) return 0;
    cp_model m;
    memset(&m, 0, sizeof m);
    if (cp_config_from_json(&m.config, root, "config.json") == CP_OK) {
        /* Keep the tree small enough to build quickly; sizes are only shapes here. */
        if (m.config.num_layers <= 64) {
            m.arch = cp_arch_find(m.config.model_type);
            if (m.arch->build(&m) == CP_OK) {
                (void)cp_module_num_parameters(m.root);
                char *repr = cp_module_repr(m.root);
                cp_free(repr);
            }
            if (m.arch->free_state) m.arch->free_state(&m);
            cp_module_free(m.root);
        }
        cp_config_free(&m.config);
    }
    cJSON_Delete(root);
    return 0;
}
