"""MerchantService over gRPC: protobuf in, a use case, protobuf out. Errors are domain errors that
the call pipeline (payhub.server.interceptors) maps to google.rpc.Status."""

from __future__ import annotations

import grpc
from payhub.merchant.v1 import merchant_pb2 as pb
from payhub.merchant.v1 import merchant_pb2_grpc

from payhub.merchant import convert as cv
from payhub.merchant.service import MerchantCenter

Ctx = grpc.ServicerContext


class MerchantServicer(merchant_pb2_grpc.MerchantServiceServicer):
    def __init__(self, center: MerchantCenter) -> None:
        self._center = center

    # -- merchants ----------------------------------------------------------------------------
    def CreateMerchant(self, request: pb.CreateMerchantRequest, context: Ctx) -> pb.CreateMerchantResponse:
        merchant = self._center.create_merchant(cv.draft_from(request.merchant), cv.request_key(request))
        return pb.CreateMerchantResponse(merchant=cv.merchant_to(merchant))

    def GetMerchant(self, request: pb.GetMerchantRequest, context: Ctx) -> pb.GetMerchantResponse:
        merchant = self._center.get_merchant(cv.merchant_id(request.name))
        return pb.GetMerchantResponse(merchant=cv.merchant_to(merchant))

    def ListMerchants(self, request: pb.ListMerchantsRequest, context: Ctx) -> pb.ListMerchantsResponse:
        page = self._center.list_merchants(cv.state_from(request.state), request.page_size, request.page_token)
        return pb.ListMerchantsResponse(merchants=[cv.merchant_to(m) for m in page.items],
                                        next_page_token=page.next_page_token)

    def UpdateMerchant(self, request: pb.UpdateMerchantRequest, context: Ctx) -> pb.UpdateMerchantResponse:
        merchant = self._center.update_merchant(
            cv.merchant_id(request.merchant.name, "merchant.name"), cv.draft_from(request.merchant),
            list(request.update_mask.paths), cv.request_key(request))
        return pb.UpdateMerchantResponse(merchant=cv.merchant_to(merchant))

    def ApproveMerchant(self, request: pb.ApproveMerchantRequest, context: Ctx) -> pb.ApproveMerchantResponse:
        merchant = self._center.approve_merchant(cv.merchant_id(request.name), cv.request_key(request))
        return pb.ApproveMerchantResponse(merchant=cv.merchant_to(merchant))

    def SuspendMerchant(self, request: pb.SuspendMerchantRequest, context: Ctx) -> pb.SuspendMerchantResponse:
        merchant = self._center.suspend_merchant(cv.merchant_id(request.name), request.reason,
                                                 cv.request_key(request))
        return pb.SuspendMerchantResponse(merchant=cv.merchant_to(merchant))

    def ReactivateMerchant(self, request: pb.ReactivateMerchantRequest,
                           context: Ctx) -> pb.ReactivateMerchantResponse:
        merchant = self._center.reactivate_merchant(cv.merchant_id(request.name), cv.request_key(request))
        return pb.ReactivateMerchantResponse(merchant=cv.merchant_to(merchant))

    # -- API keys --------------------------------------------------------------------------------
    def CreateApiKey(self, request: pb.CreateApiKeyRequest, context: Ctx) -> pb.CreateApiKeyResponse:
        issued = self._center.create_api_key(cv.merchant_id(request.parent, "parent"), request.api_key.read_only,
                                             request.api_key.description, cv.request_key(request))
        return pb.CreateApiKeyResponse(api_key=cv.api_key_to(issued.key), secret=issued.secret)

    def RevokeApiKey(self, request: pb.RevokeApiKeyRequest, context: Ctx) -> pb.RevokeApiKeyResponse:
        merchant, key = cv.api_key_id(request.name)
        revoked = self._center.revoke_api_key(merchant, key, cv.request_key(request))
        return pb.RevokeApiKeyResponse(api_key=cv.api_key_to(revoked))

    def ListApiKeys(self, request: pb.ListApiKeysRequest, context: Ctx) -> pb.ListApiKeysResponse:
        page = self._center.list_api_keys(cv.merchant_id(request.parent, "parent"), request.page_size,
                                          request.page_token)
        return pb.ListApiKeysResponse(api_keys=[cv.api_key_to(k) for k in page.items],
                                      next_page_token=page.next_page_token)

    # -- channel configurations -----------------------------------------------------------------
    def ConfigureChannel(self, request: pb.ConfigureChannelRequest, context: Ctx) -> pb.ConfigureChannelResponse:
        config = self._center.configure_channel(cv.merchant_id(request.parent, "parent"),
                                                cv.channel_input_from(request.channel_config),
                                                cv.request_key(request))
        return pb.ConfigureChannelResponse(channel_config=cv.channel_config_to(config))

    def ListChannelConfigs(self, request: pb.ListChannelConfigsRequest,
                           context: Ctx) -> pb.ListChannelConfigsResponse:
        page = self._center.list_channel_configs(cv.merchant_id(request.parent, "parent"), request.page_size,
                                                 request.page_token)
        return pb.ListChannelConfigsResponse(channel_configs=[cv.channel_config_to(c) for c in page.items],
                                             next_page_token=page.next_page_token)

    def GetChannelCredentials(self, request: pb.GetChannelCredentialsRequest,
                              context: Ctx) -> pb.GetChannelCredentialsResponse:
        configs = self._center.channel_credentials(cv.merchant_id(request.parent, "parent"), request.channel)
        return pb.GetChannelCredentialsResponse(channel_credentials=[
            pb.ChannelCredentials(channel_config=cv.channel_config_to(c), credentials=creds) for c, creds in configs])

    # -- fee plan, webhook endpoint, settlement policy -----------------------------------------
    def SetFeePlan(self, request: pb.SetFeePlanRequest, context: Ctx) -> pb.SetFeePlanResponse:
        merchant = cv.singleton_owner(request.fee_plan.name, "feePlan", "fee_plan.name")
        plan = self._center.set_fee_plan(merchant, cv.fee_rules_from(request.fee_plan), cv.request_key(request))
        return pb.SetFeePlanResponse(fee_plan=cv.fee_plan_to(plan))

    def GetFeePlan(self, request: pb.GetFeePlanRequest, context: Ctx) -> pb.GetFeePlanResponse:
        plan = self._center.get_fee_plan(cv.singleton_owner(request.name, "feePlan", "name"))
        return pb.GetFeePlanResponse(fee_plan=cv.fee_plan_to(plan))

    def SetWebhookEndpoint(self, request: pb.SetWebhookEndpointRequest,
                           context: Ctx) -> pb.SetWebhookEndpointResponse:
        endpoint = request.webhook_endpoint
        merchant = cv.singleton_owner(endpoint.name, "webhookEndpoint", "webhook_endpoint.name")
        grace = request.rotation_grace_period.ToTimedelta() if request.HasField("rotation_grace_period") else None
        result = self._center.set_webhook_endpoint(merchant, endpoint.url, request.rotate_secret, grace,
                                                   cv.request_key(request))
        return pb.SetWebhookEndpointResponse(webhook_endpoint=cv.webhook_to(result.endpoint),
                                             signing_secret=result.new_secret)

    def GetWebhookEndpoint(self, request: pb.GetWebhookEndpointRequest,
                           context: Ctx) -> pb.GetWebhookEndpointResponse:
        endpoint = self._center.get_webhook_endpoint(cv.singleton_owner(request.name, "webhookEndpoint", "name"))
        return pb.GetWebhookEndpointResponse(webhook_endpoint=cv.webhook_to(endpoint))

    def GetWebhookSigningSecrets(self, request: pb.GetWebhookSigningSecretsRequest,
                                 context: Ctx) -> pb.GetWebhookSigningSecretsResponse:
        url, secrets = self._center.webhook_secrets(cv.singleton_owner(request.name, "webhookEndpoint", "name"))
        return pb.GetWebhookSigningSecretsResponse(url=url, signing_secrets=secrets)

    def SetSettlementPolicy(self, request: pb.SetSettlementPolicyRequest,
                            context: Ctx) -> pb.SetSettlementPolicyResponse:
        merchant = cv.singleton_owner(request.settlement_policy.name, "settlementPolicy", "settlement_policy.name")
        policy = self._center.set_settlement_policy(cv.settlement_policy_from(request.settlement_policy, merchant),
                                                    cv.request_key(request))
        return pb.SetSettlementPolicyResponse(settlement_policy=cv.settlement_policy_to(policy))

    def GetSettlementPolicy(self, request: pb.GetSettlementPolicyRequest,
                            context: Ctx) -> pb.GetSettlementPolicyResponse:
        policy = self._center.get_settlement_policy(cv.singleton_owner(request.name, "settlementPolicy", "name"))
        return pb.GetSettlementPolicyResponse(settlement_policy=cv.settlement_policy_to(policy))
