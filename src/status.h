/* status.h - the one status convention of llm-proxy.
 *
 * Fallible functions return enum lp_status. LP_OK is zero so `if (rc != LP_OK)` reads naturally.
 * A function starts its result at a failure value and has one `out:` exit.
 */
#ifndef LP_STATUS_H
#define LP_STATUS_H

enum lp_status {
    LP_OK = 0,
    LP_ERR = -1,        /* generic failure; details went to a diagnostic or the log */
    LP_AGAIN = -2,      /* not enough input yet; call again with more */
    LP_DECLINED = -3,   /* not applicable; the caller should try something else */
    LP_ERR_TOOBIG = -4, /* a ceiling was hit (body, line, buffer) */
    LP_ERR_PARSE = -5,  /* malformed input */
    LP_ERR_NOTFOUND = -6,
};

#endif
