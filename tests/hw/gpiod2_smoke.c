/* The libgpiod 2.x path against a real kernel GPIO chip: linked statically against the cached
 * libgpiod.a (tests/hw/setup.sh), run inside the VM by gpiod2_smoke.sh.
 *
 *   gpiod2_smoke LABEL INPUT OUTPUT EDGE
 *
 * Finds the chip by its label among /dev/gpiochip*, and the lines by their names; prints
 * gpiod_api_version(); reads INPUT; drives OUTPUT high and says so ("holding OUTPUT"), then
 * watches EDGE for a rising edge (10 s at most), and ends, releasing every line. */
#include <gpiod.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what) {
  perror(what);
  return 1;
}

static struct gpiod_chip *open_by_label(const char *label) {
  DIR *dir = opendir("/dev");
  struct dirent *entry;
  struct gpiod_chip *found = NULL;
  if (!dir) return NULL;
  while (!found && (entry = readdir(dir))) {
    char path[300];
    if (strncmp(entry->d_name, "gpiochip", 8) != 0) continue;
    snprintf(path, sizeof path, "/dev/%s", entry->d_name);
    if (!gpiod_is_gpiochip_device(path)) continue;
    struct gpiod_chip *chip = gpiod_chip_open(path);
    if (!chip) continue;
    struct gpiod_chip_info *info = gpiod_chip_get_info(chip);
    if (info && strcmp(gpiod_chip_info_get_label(info), label) == 0) {
      printf("chip %s [%s] %zu lines\n", gpiod_chip_info_get_name(info), gpiod_chip_info_get_label(info),
             gpiod_chip_info_get_num_lines(info));
      found = chip;
    } else {
      gpiod_chip_close(chip);
    }
    if (info) gpiod_chip_info_free(info);
  }
  closedir(dir);
  return found;
}

/* One line, requested with the given settings. */
static struct gpiod_line_request *request(struct gpiod_chip *chip, unsigned int offset,
                                          struct gpiod_line_settings *settings) {
  struct gpiod_line_config *config = gpiod_line_config_new();
  struct gpiod_request_config *req_config = gpiod_request_config_new();
  struct gpiod_line_request *req = NULL;
  if (config && req_config && gpiod_line_config_add_line_settings(config, &offset, 1, settings) == 0) {
    gpiod_request_config_set_consumer(req_config, "gpiod2-smoke");
    req = gpiod_chip_request_lines(chip, req_config, config);
  }
  gpiod_request_config_free(req_config);
  gpiod_line_config_free(config);
  gpiod_line_settings_free(settings);
  return req;
}

static int offset_of(struct gpiod_chip *chip, const char *name) {
  int offset = gpiod_chip_get_line_offset_from_name(chip, name);
  if (offset < 0) fprintf(stderr, "no line named %s\n", name);
  return offset;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s LABEL INPUT OUTPUT EDGE\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("libgpiod api %s\n", gpiod_api_version());

  struct gpiod_chip *chip = open_by_label(argv[1]);
  if (!chip) {
    fprintf(stderr, "no chip labelled %s\n", argv[1]);
    return 1;
  }
  int input = offset_of(chip, argv[2]), output = offset_of(chip, argv[3]), edge = offset_of(chip, argv[4]);
  if (input < 0 || output < 0 || edge < 0) return 1;

  struct gpiod_line_settings *settings = gpiod_line_settings_new();
  gpiod_line_settings_set_direction(settings, GPIOD_LINE_DIRECTION_INPUT);
  struct gpiod_line_request *in = request(chip, (unsigned)input, settings);
  if (!in) return fail("request input");
  enum gpiod_line_value value = gpiod_line_request_get_value(in, (unsigned)input);
  if (value == GPIOD_LINE_VALUE_ERROR) return fail("read input");
  printf("%s=%d\n", argv[2], value == GPIOD_LINE_VALUE_ACTIVE);
  gpiod_line_request_release(in);

  settings = gpiod_line_settings_new();
  gpiod_line_settings_set_direction(settings, GPIOD_LINE_DIRECTION_OUTPUT);
  gpiod_line_settings_set_output_value(settings, GPIOD_LINE_VALUE_ACTIVE);
  struct gpiod_line_request *out = request(chip, (unsigned)output, settings);
  if (!out) return fail("request output");
  printf("holding %s=1\n", argv[3]);

  settings = gpiod_line_settings_new();
  gpiod_line_settings_set_direction(settings, GPIOD_LINE_DIRECTION_INPUT);
  gpiod_line_settings_set_edge_detection(settings, GPIOD_LINE_EDGE_RISING);
  struct gpiod_line_request *watch = request(chip, (unsigned)edge, settings);
  if (!watch) return fail("request edge");
  printf("watching %s\n", argv[4]);
  int ready = gpiod_line_request_wait_edge_events(watch, 10LL * 1000 * 1000 * 1000);
  if (ready < 0) return fail("wait edge");
  if (ready == 0) {
    printf("no edge in 10 s\n");
    return 1;
  }
  struct gpiod_edge_event_buffer *events = gpiod_edge_event_buffer_new(4);
  int n = gpiod_line_request_read_edge_events(watch, events, 4);
  if (n < 1) return fail("read edge");
  struct gpiod_edge_event *event = gpiod_edge_event_buffer_get_event(events, 0);
  printf("edge %s on %s (offset %u)\n",
         gpiod_edge_event_get_event_type(event) == GPIOD_EDGE_EVENT_RISING_EDGE ? "rising" : "falling", argv[4],
         gpiod_edge_event_get_line_offset(event));
  gpiod_edge_event_buffer_free(events);

  gpiod_line_request_release(watch);
  gpiod_line_request_release(out);
  gpiod_chip_close(chip);
  printf("released\n");
  return 0;
}
