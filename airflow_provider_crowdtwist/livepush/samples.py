"""Pushes shaped like Oracle's samples (Live Push User Profile with Tiers v2; LivePushUserActivity).

For tests, the benchmark and anyone checking a receiver by hand; the sandbox builds its own pushes from
its members (``sandbox/push.py``) in the same shape.
"""

from __future__ import annotations

from typing import Any


def sample_profile(member_id: int, *, version: int = 0, points: int = 5200) -> dict[str, Any]:
    """A full profile push of member ``member_id``; ``version`` moves ``dateLastUpdated`` forward."""
    return {
        "country": "US", "receiveSmsMessages": 0, "facebookUserId": None, "redeemablePoints": points,
        "postalCode": "10001",
        "tierInfo": {
            "resetDate": "2017-03-23T20:00:00Z", "dateReached": "2017-03-23T19:00:00Z",
            "scoreNeededToReach": 1000, "nextLevel": {"minValue": 1000, "maxValue": 2499, "title": "Tier 2"},
            "tierScore": 0, "timeframeScore": 1200, "assignedByEvent": "UPDATE",
            "currentLevel": {"minValue": None, "maxValue": 999, "title": "Tier 1"}, "score": 0,
            "daysUntilResetDate": 0, "daysUntilExpirationDate": 0, "dateAssigned": "2017-03-23T19:00:00Z",
            "expirationDate": "2017-03-23T20:00:00Z", "scoreNeededToMaintain": None,
        },
        "customData": {"employee_id": "employee1", "register_id": "1"}, "signUpTypeId": 3, "isActive": 1,
        "emailAddress": f"member{member_id}@example.com", "password": None, "dateMobileVerified": None,
        "dateLastLogin": 1490290125, "yahooUserId": None, "state": "NY", "id": member_id,
        "monthlyPoints": 0, "signUpCampaign": None, "signUpChannelId": None, "ipAddress": None,
        "fanRank": 0, "firstName": "George", "fsqUserId": None, "activityStreamOptIn": "1",
        "googleUserId": None, "region": "Northeast", "instUserId": None, "weeklyPoints": 0,
        "lastName": "Twist", "clientBrandingId": "0", "gender": "Male", "city": "New York City",
        "dateLastUpdated": 1490302144 + version, "hashAlgorithmId": None, "numFacebookFriends": 0,
        "thirdPartyId": None, "dateCreated": 1490293725, "mobilePhoneNumber": "12312312321", "salt": None,
        "numTwitterFollowers": 0, "streetAddress1": None, "streetAddress2": None, "emailIsVerified": 1,
        "fanLevelName": "Tier 1", "dateOfBirth": 142372800, "receiveEmailUpdates": 1,
        "userName": f"gtwist{member_id}", "twitterUserId": None, "langPref": None, "totalPoints": points,
        "numPointsPurchased": 0, "middleName": "", "passwordGenerated": 0,
    }  # fmt: skip


def sample_activity(user_activity_id: int, *, member_id: int = 6566, points: int = 10) -> dict[str, Any]:
    """An activity completion push (O:LivePushUserActivity)."""
    return {
        "userActivityId": user_activity_id,
        "activityId": "purchase",
        "activityName": "Purchase",
        "title": "Purchase",
        "points": points,
        "notes": None,
        "referenceId": f"order-{user_activity_id}",
        "activityExtraData": {"order_id": f"order-{user_activity_id}"},
        "thirdPartyId": None,
        "userId": member_id,
        "emailAddress": f"member{member_id}@example.com",
        "dateCreated": 1490302144,
    }
