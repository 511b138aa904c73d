/* Grayscale JPEG decoding through the system's libjpeg (libjpeg-turbo on Debian), for
 * umcl-data's image pipeline. Built by build.rs with the cargo feature `libjpeg` (the build
 * fails when jpeglib.h is missing); without the feature the crate decodes with zune-jpeg. */
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>

typedef struct {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  char *msg;
  size_t msg_cap;
} umcl_err;

static void umcl_error_exit(j_common_ptr cinfo) {
  umcl_err *e = (umcl_err *)cinfo->err;
  char buf[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, buf);
  if (e->msg_cap > 0) {
    strncpy(e->msg, buf, e->msg_cap - 1);
    e->msg[e->msg_cap - 1] = 0;
  }
  longjmp(e->jump, 1);
}

/* Nothing is printed: messages go back to the caller. */
static void umcl_output_message(j_common_ptr cinfo) { (void)cinfo; }

/* A warning (msg_level -1: corrupt or missing entropy data, which libjpeg fills in and goes
 * on) is an error here, as Pillow makes it: a damaged radiograph must not train silently.
 * Trace messages (msg_level >= 0) are ignored. */
static void umcl_emit_message(j_common_ptr cinfo, int msg_level) {
  if (msg_level < 0) umcl_error_exit(cinfo);
}

/* Decodes a single-component (grayscale) JPEG, scaled by 1/scale_denom in the DCT domain
 * (1 = full size), into out: width * height bytes, row after row.
 * With region = {row0, row1, col0, col1} (not NULL), only rows [row0, row1) and columns
 * [col0, col1) need to be right: libjpeg skips the rows above (no inverse DCT), stops after
 * the last row (no decoding at all below), and runs the inverse DCT only for the blocks of the
 * columns (widened to whole blocks); the other bytes of out are left as they were.
 * Returns 0 when decoded; 1 on an error (its message in msg); 2 when the JPEG is not
 * single-component (nothing decoded); 3 when cap < width * height (nothing decoded; width
 * and height are set). */
int umcl_jpeg_gray(const unsigned char *data, size_t len, int scale_denom,
                   const size_t *region, unsigned char *out, size_t cap, size_t *width,
                   size_t *height, char *msg, size_t msg_cap) {
  struct jpeg_decompress_struct cinfo;
  umcl_err err;
  memset(&cinfo, 0, sizeof cinfo);
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = umcl_error_exit;
  err.pub.output_message = umcl_output_message;
  err.pub.emit_message = umcl_emit_message;
  err.msg = msg;
  err.msg_cap = msg_cap;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return 1;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, (unsigned long)len);
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.num_components != 1 || cinfo.jpeg_color_space != JCS_GRAYSCALE) {
    jpeg_destroy_decompress(&cinfo);
    return 2;
  }
  cinfo.out_color_space = JCS_GRAYSCALE;
  cinfo.scale_num = 1;
  cinfo.scale_denom = scale_denom > 0 ? (unsigned int)scale_denom : 1;
  jpeg_calc_output_dimensions(&cinfo);
  *width = cinfo.output_width;
  *height = cinfo.output_height;
  if ((size_t)cinfo.output_width * cinfo.output_height > cap) {
    jpeg_destroy_decompress(&cinfo);
    return 3;
  }
  {
    size_t full_w = cinfo.output_width;
    JDIMENSION row1 = cinfo.output_height;
    JDIMENSION x0 = 0;
    jpeg_start_decompress(&cinfo);
    if (region != NULL && region[0] < region[1] && region[1] <= cinfo.output_height &&
        region[2] < region[3] && region[3] <= cinfo.output_width) {
      JDIMENSION cw = (JDIMENSION)(region[3] - region[2]);
      x0 = (JDIMENSION)region[2];
      if (x0 > 0 || cw < cinfo.output_width)
        jpeg_crop_scanline(&cinfo, &x0, &cw); /* widens to whole blocks */
      if (region[0] > 0)
        jpeg_skip_scanlines(&cinfo, (JDIMENSION)region[0]);
      row1 = (JDIMENSION)region[1];
    }
    while (cinfo.output_scanline < row1) {
      JSAMPROW rows[16];
      JDIMENSION left = row1 - cinfo.output_scanline;
      JDIMENSION n = left < 16 ? left : 16;
      JDIMENSION k;
      for (k = 0; k < n; k++)
        rows[k] = out + (size_t)(cinfo.output_scanline + k) * full_w + x0;
      jpeg_read_scanlines(&cinfo, rows, n);
    }
    if (cinfo.output_scanline < cinfo.output_height)
      jpeg_abort_decompress(&cinfo);
    else
      jpeg_finish_decompress(&cinfo);
  }
  jpeg_destroy_decompress(&cinfo);
  return 0;
}
