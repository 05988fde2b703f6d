/*
 * commands.h — the `cpeft` program's subcommands. main.c dispatches `cpeft NAME ...` to
 * cmd_NAME(argc, argv) with argv[0] == "NAME". Each returns the process exit status (0 ok,
 * 1 on an error it has already reported as "cpeft NAME: <message>", 2 on a usage error) and
 * prints its own --help.
 */
#ifndef CP_CLI_COMMANDS_H
#define CP_CLI_COMMANDS_H

int cmd_info(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_adapter(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_eval_generate(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
