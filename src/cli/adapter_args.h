/*
 * adapter_args.h — the `--adapter DIR[:NAME[:WEIGHT]]` option shared by eval, merge and generate:
 * loads each adapter under NAME (the first defaults to "default", later ones to their directory's
 * base name) and activates them all together; WEIGHT scales that adapter's delta (several weighted
 * adapters active at once equal PEFT's add_weighted_adapter with combination_type="cat").
 */
#ifndef CP_CLI_ADAPTER_ARGS_H
#define CP_CLI_ADAPTER_ARGS_H

#include "models/model.h"

cp_status cli_load_adapters(cp_model *m, char *const *specs, int n);

#endif
